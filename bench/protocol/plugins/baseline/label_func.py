"""The tutorial's label_func.py: wraps label() as an eKuiper SDK Function."""
from typing import Any, List

from ekuiper import Context, Function

from label import label


# Inherit Function class from eKuiper SDK and implement it.
class LabelImageFunc(Function):

    def __init__(self):
        pass

    def validate(self, args: List[Any]):
        if len(args) != 1:
            return "invalid arg length"
        return ""

    def exec(self, args: List[Any], ctx: Context):
        return label(args[0])

    def is_aggregate(self):
        return False


# Create an instance for the class to be called by the entry function later
labelIns = LabelImageFunc()
