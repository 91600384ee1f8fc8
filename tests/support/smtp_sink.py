#!/usr/bin/env python3
"""A local SMTP server for Packwell's e-mail tests, on aiosmtpd (PyPI).

Every message it accepts is written whole to SPOOL/NNNN.eml. With --kill-pid-file, the first
message makes it kill (SIGKILL) the process whose id is in that file before it answers 250:
the sender crashes after the message was handed over and before it heard it was accepted.
It prints "listening PORT" once it serves, and stops when its standard input closes.
"""
import argparse
import asyncio
import os
import pathlib
import signal
import socket
import sys

from aiosmtpd.controller import Controller


class Spool:
    def __init__(self, spool, kill_pid_file):
        self.spool = spool
        self.kill_pid_file = kill_pid_file
        self.killed = False
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        tmp = self.spool / f".{self.count:04d}.tmp"
        tmp.write_bytes(envelope.original_content or envelope.content)
        tmp.rename(self.spool / f"{self.count:04d}.eml")
        if self.kill_pid_file is not None and not self.killed:
            self.killed = True
            pid = int(self.kill_pid_file.read_text().strip())
            os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.5)
        return "250 2.0.0 Message accepted for delivery"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--spool", required=True, type=pathlib.Path)
    parser.add_argument("--kill-pid-file", type=pathlib.Path)
    args = parser.parse_args()
    args.spool.mkdir(parents=True, exist_ok=True)
    port = free_port()
    controller = Controller(Spool(args.spool, args.kill_pid_file), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"listening {port}", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
