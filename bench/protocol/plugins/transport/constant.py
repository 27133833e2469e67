"""A function that answers the same result to every call: what a plugin costs before
it does any work (the transport floor, bench/protocol; the host's ceiling,
bench/ekuiper, which ships this file in its zip)."""

from typing import Any, List


class Constant:
    def __init__(self, result: Any):
        self.result = result

    def validate(self, args: List[Any]) -> str:
        return ""

    def is_aggregate(self) -> bool:
        return False

    def exec(self, args: List[Any]) -> Any:
        return self.result
