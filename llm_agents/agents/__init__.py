from .base import Agent, AgentStream
from .params import Param
from .result import AgentResult
from .tools import Tool

__all__ = ["Agent", "AgentResult", "AgentStream", "Param", "Tool"]
