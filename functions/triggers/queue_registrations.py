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
    from functions.bootstrap import services
    from functions.triggers import registration_worker as worker
    from functions.triggers.queue_retries import poison_watch

    svc = await services().ready()
    async with poison_watch(msg, REGISTRATION_REQUESTS_QUEUE, svc):  # message.poisoned on its last raise
        await worker.registration_worker(msg)
