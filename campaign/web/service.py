"""Running the readers' app under uvicorn: bind, log without addresses, stop cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import copy
import logging
import signal
import socket
from typing import Callable
from urllib.parse import unquote

import uvicorn
import uvicorn.config

from ..addresses import mask_addresses
from ..config import Settings
from ..errors import UsageError
from ..ledger import open_ledger
from .readers import create_app

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class AddressesHidden(logging.Filter):
    """Access-log lines keep the path but drop the query string (tokens) and mask anything like an
    address; other records have their addresses masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, version, status = record.args
            path = mask_addresses(unquote(str(path).split("?", 1)[0]))
            record.args = (client, method, path, version, status)
        else:
            record.msg = mask_addresses(str(record.msg))
            if isinstance(record.args, tuple):
                record.args = tuple(mask_addresses(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


def log_config() -> dict:
    """uvicorn's logging with both logs on stderr (stdout is for what the command prints) and
    every record through AddressesHidden."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["filters"] = {"addresses_hidden": {"()": AddressesHidden}}
    for handler in config["handlers"].values():
        handler["stream"] = "ext://sys.stderr"
        handler["filters"] = ["addresses_hidden"]
    return config


def serve(settings: Settings, host: str, port: int, on_listening: Callable[[str], None]) -> None:
    """Serve the readers' app on host:port until Ctrl-C or SIGTERM; `on_listening` gets the base URL."""
    open_ledger(settings.database).close()        # a wrong ledger path fails here, in one line
    app = create_app(settings)
    listener = _bind(host, port)
    config = uvicorn.Config(app, log_level="info", log_config=log_config(), server_header=False,
                            timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    bound_port = listener.getsockname()[1]
    on_listening(f"http://{f'[{host}]' if ':' in host else host}:{bound_port}")
    # uvicorn shuts down gracefully on these signals, then raises them again: land them here.
    previous = {number: signal.signal(number, lambda *_: None) for number in STOP_SIGNALS}
    try:
        server.run(sockets=[listener])
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        listener.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise UsageError(f"cannot listen on {host}:{port} ({error.strerror}); choose another --host or --port") \
            from None
    listener.listen(128)
    return listener
