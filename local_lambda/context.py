"""A Lambda context object for running the function off AWS (imports nothing of the project, so a
benchmark can load another commit's function beside it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LocalContext:
    """The attributes of a Lambda context object that the function and Powertools read."""

    function_name: str = "lambda-forest-predict"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:lambda-forest-predict"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"
    log_group_name: str = "/aws/lambda/lambda-forest-predict"
    log_stream_name: str = "2026/11/30/[$LATEST]0"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000
