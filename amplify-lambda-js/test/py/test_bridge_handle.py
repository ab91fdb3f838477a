"""litellm/bridge.py's request handler: every request gets exactly one answer, even when the
error mapper itself fails (otherwise the request would hang until its deadline)."""

import asyncio
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "litellm"))

import bridge  # noqa: E402


class FailingEndpoint:
    async def handle(self, kind, params, emit):
        raise RuntimeError("provider exploded")


def broken_describe_error(exc, secrets=()):
    raise KeyError("status")


class HandleTest(unittest.TestCase):
    def setUp(self):
        self.read_fd, write_fd = os.pipe()
        self.previous_fd = bridge.PROTOCOL_FD
        bridge.PROTOCOL_FD = write_fd

    def tearDown(self):
        os.close(bridge.PROTOCOL_FD)
        os.close(self.read_fd)
        bridge.PROTOCOL_FD = self.previous_fd

    def answers(self):
        os.close(bridge.PROTOCOL_FD)
        bridge.PROTOCOL_FD = os.open(os.devnull, os.O_WRONLY)
        data = b""
        while chunk := os.read(self.read_fd, 65536):
            data += chunk
        return [json.loads(line) for line in data.decode("utf-8").splitlines()]

    def test_a_failing_error_mapper_still_answers_the_request(self):
        asyncio.run(bridge.handle(FailingEndpoint(), broken_describe_error, {"id": "7", "type": "chat", "params": {}}))
        self.assertEqual(
            self.answers(),
            [
                {
                    "id": "7",
                    "type": "error",
                    "error": {
                        "status": 500,
                        "type": "internal_error",
                        "message": "the LiteLLM bridge failed to describe an error",
                        "param": None,
                        "code": "error_mapping_failed",
                        "retry_after": None,
                        "ours": True,
                    },
                }
            ],
        )


if __name__ == "__main__":
    unittest.main()
