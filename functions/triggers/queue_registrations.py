"""Queue trigger on `registration-requests` (a Blueprint). The handler (registration_worker.py)
is imported on the first message, so importing function_app stays fast on cold start.

Message schema: queue_messages.py. Unreadable messages and TransientError raise: the host
retries, then moves the message to `registration-requests-poison`.
"""

from __future__ import annotations

import azure.functions as func

from functions.resources import REGISTRATION_REQUESTS_QUEUE

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name=REGISTRATION_REQUESTS_QUEUE, connection="AzureWebJobsStorage")
async def registration_worker(msg: func.QueueMessage) -> None:
    from functions.triggers import registration_worker as worker

    await worker.registration_worker(msg)
