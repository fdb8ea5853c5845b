"""A small function app for the devstack host's tests (not Registrar's).

Each non-HTTP function records what it received as one JSON file in SAMPLE_RECORD_DIR, so a test
sees exactly what the host passed in.
"""

from __future__ import annotations  # annotations are strings: the host must still see `str` below

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def record(kind: str, **fields: object) -> None:
    if not os.environ.get("SAMPLE_RECORD_DIR"):
        return  # `devstack up` on the sample app: nothing is watching
    folder = Path(os.environ["SAMPLE_RECORD_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    # Written aside, then renamed: a test polling the folder never reads a half-written record.
    name = f"{kind}-{uuid.uuid4().hex}.json"
    partial = folder / f".{name}.partial"
    partial.write_text(json.dumps({"kind": kind, **fields}), encoding="utf-8")
    partial.replace(folder / name)


@app.route(route="items/{id:guid}", methods=["GET"])
def get_item(req: func.HttpRequest) -> func.HttpResponse:
    body = {
        "id": req.route_params["id"],
        "method": req.method,
        "view": req.params.get("view"),
        "greeting": os.environ.get("SAMPLE_GREETING"),
        "principal": req.headers.get("x-ms-client-principal"),
    }
    return func.HttpResponse(json.dumps(body), mimetype="application/json", headers={"x-sample": "yes"})


@app.route(route="files/{*path}", methods=["POST", "PUT"], auth_level=func.AuthLevel.ANONYMOUS)
async def put_file(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return func.HttpResponse(
        req.get_body()[::-1],
        status_code=201,
        mimetype="application/octet-stream",
        headers={"x-path": req.route_params.get("path", ""), "x-function": context.function_name},
    )


@app.route(route="fetch", methods=["GET"])
async def fetch(req: func.HttpRequest) -> func.HttpResponse:
    """GET another URL with aiohttp: proves the CA named in the settings (SSL_CERT_FILE) is trusted."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(req.params["url"]) as response:
        return func.HttpResponse(str(response.status))


@app.route(route="broken")
def broken(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("this function always fails")


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="SampleStorage")
def work_queue(msg: func.QueueMessage) -> None:
    text = msg.get_body().decode("utf-8")
    record("queue", id=msg.id, body=text, dequeue_count=msg.dequeue_count, pop_receipt=bool(msg.pop_receipt))
    if text.startswith("fail"):
        raise ValueError("asked to fail")
    if text.startswith("sleep:"):
        time.sleep(float(text.split(":")[1]))


@app.queue_trigger(arg_name="text", queue_name="%SAMPLE_QUEUE%-text", connection="SampleStorage")
def plain_text(text: str) -> None:
    """A `str` parameter gets the message body itself, not a QueueMessage (as the Python worker does)."""
    record("text", type=type(text).__name__, body=text)


@app.timer_trigger(schedule="%SAMPLE_SCHEDULE%", arg_name="timer", use_monitor=True)
def every_second(timer: func.TimerRequest) -> None:
    record("timer", past_due=timer.past_due)


@app.timer_trigger(schedule="%SAMPLE_SLOW_SCHEDULE%", arg_name="timer", run_on_startup=True)
async def slow_timer(timer: func.TimerRequest) -> None:
    """Runs longer than its schedule's interval: the host must never start a second run meanwhile."""
    started = time.time()
    await asyncio.sleep(float(os.environ.get("SAMPLE_SLOW_SECONDS", "1.5")))
    record("slow", started=started, ended=time.time(), past_due=timer.past_due)


@app.event_grid_trigger(arg_name="event")
async def on_event(event: func.EventGridEvent) -> None:
    # azure-functions hands CloudEvents 1.0 events over as func.CloudEvent (type/source, not event_type/topic).
    if isinstance(event, func.CloudEvent):
        record(
            "eventgrid",
            schema="cloudevents",
            id=event.id,
            event_type=event.type,
            subject=event.subject,
            topic=event.source,
            data=event.get_json(),
        )
        return
    record(
        "eventgrid",
        schema="eventgrid",
        id=event.id,
        event_type=event.event_type,
        subject=event.subject,
        topic=event.topic,
        data=event.get_json(),
    )
