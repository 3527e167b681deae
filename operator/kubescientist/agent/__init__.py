"""LLM work: the client and its accounts, prompts, the LLM proposer and judge, ideation and literature.

Imports the core only (never adapters or the CLI). Modules: ``config`` (endpoint, key, models, caps),
``llm`` (the client), ``accounting`` (ledger, prices, caps), ``prompts`` (the jinja2 library),
``answers`` (parsing answers), ``context`` (what the agent knows of a run), ``proposer`` (actions and
judgements), ``program`` (files of an LLM-written program), ``ideas`` and ``literature``.
"""

from kubescientist.agent.accounting import Caps, Ledger, Price, PriceTable, Usage
from kubescientist.agent.config import LLMConfig, RetryPolicy, from_settings
from kubescientist.agent.context import Idea, NodeOutput, ResearchContext, TemplateCode
from kubescientist.agent.errors import AgentError, AnswerError, BudgetExceeded, ConfigError, LLMUnavailable
from kubescientist.agent.llm import LLMClient
from kubescientist.agent.proposer import LLMProposer, NodeReview, plan_subject

__all__ = ["AgentError", "AnswerError", "BudgetExceeded", "Caps", "ConfigError", "Idea", "LLMClient", "LLMConfig",
           "LLMProposer", "LLMUnavailable", "Ledger", "NodeOutput", "NodeReview", "Price", "PriceTable",
           "ResearchContext", "RetryPolicy", "TemplateCode", "Usage", "from_settings", "plan_subject"]
