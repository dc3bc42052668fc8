"""Drives PyPI's papr-memory SDK for test/e2e/papr-sdk.suite.ts: reads one call as JSON on stdin, makes it with the
official client exactly as an application would, and prints what the SDK parsed (or the error it raised) as JSON.

Input: {"client": {"base_url", "x_api_key", "timeout", "max_retries"}, "call": "add_batch" | "add" |
"retrieve_batch_status", "args": [...], "kwargs": {...}}.
Output: {"ok": true, "parsed": <model_dump of the SDK's answer>} or {"ok": false, "status": <HTTP status or None>,
"error": <class name>, "body": <the answer's body, if any>}.
"""

import json
import sys

import papr_memory
from papr_memory import Papr


def main() -> None:
    request = json.load(sys.stdin)
    client = Papr(**request["client"])
    method = getattr(client.memory, request["call"])
    try:
        answer = method(*request.get("args", []), **request.get("kwargs", {}))
    except papr_memory.APIStatusError as error:
        print(json.dumps({"ok": False, "status": error.status_code, "error": type(error).__name__, "body": error.body}))
        return
    except papr_memory.APIError as error:
        print(json.dumps({"ok": False, "status": None, "error": type(error).__name__, "body": None}))
        return
    parsed = answer.model_dump(mode="json") if hasattr(answer, "model_dump") else answer
    print(json.dumps({"ok": True, "parsed": parsed}, default=str))


if __name__ == "__main__":
    main()
