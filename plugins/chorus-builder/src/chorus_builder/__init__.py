"""chorus-builder: a research-to-code pipeline as a Chorus plugin.

Five agents in a ``sequential`` team, ``builder``: the **researcher** reads the knowledge base and
the files in the conversation, the **planner** writes a plan, the **executor** checks it and notes
the architecture, the **coder** writes the code as files (``### File: `name``` and a code block:
the page offers each file as a download, ``chorus ask --save-files DIR`` writes them) and the
**finalizer** sums up. With a real model each is an ``AssistantAgent`` with the prompt below; with
Chorus's offline model each writes its step from a template (:mod:`chorus_builder._skeletons`): a
real plan and a runnable skeleton for a command-line tool, a small web API or a game loop, and an
honest note for anything else. Only Chorus's public API is used.
"""

from __future__ import annotations

from collections.abc import Sequence

from autogen_agentchat.base import ChatAgent

from chorus import AgentContext, AgentSpec, Starter, TeamSpec, hookimpl
from chorus_builder._offline import STEPS, OfflineStep
from chorus_builder._skeletons import Blueprint, blueprint

__version__ = "0.1.0"

TEAM = "builder"
FILE_CONVENTION = (
    "Write each file as a heading line `### File: `relative/path.py`` followed by one fenced code block with "
    "the whole file (fence a Markdown file with four backticks); the user downloads each file from your message."
)

PROMPTS = {
    "researcher": "You are the researcher of a software team. Read the user's request and any files they "
                  "attached; call `search_knowledge` for what the knowledge base says about it. Reply with short "
                  "research notes: what is asked, constraints, and facts the others need. No code, no plan.",
    "planner": "You are the planner. From the request and the research notes, write a numbered plan of at most "
               "seven concrete steps (files, functions, how to run and test it). No code.",
    "executor": "You are the executor. Check the plan against the request: say what is missing or wrong and fix "
                "it, then note the architecture (files, entry point, data flow, dependencies). No code.",
    "coder": "You are the coder. Write the complete, runnable code that the checked plan describes, standard "
             "library first, with a small test file. " + FILE_CONVENTION + " Say in one line how to run it.",
    "finalizer": "You are the finalizer. In three or four friendly sentences tell the user what was built, "
                 "which files to download and how to run them, and what to do next. No code.",
}
DESCRIPTIONS = {
    "researcher": "Builder pipeline, step 1: researches the request in the knowledge base and your files.",
    "planner": "Builder pipeline, step 2: writes a numbered plan.",
    "executor": "Builder pipeline, step 3: checks the plan and notes the architecture.",
    "coder": "Builder pipeline, step 4: writes the code as files you can download.",
    "finalizer": "Builder pipeline, step 5: sums up what was built and how to run it.",
}
MEMBERS = list(PROMPTS)


def make_agent(context: AgentContext) -> ChatAgent:
    """A builder step: the offline template when Chorus runs its offline model, else a model's agent."""
    if context.offline:
        return OfflineStep(context, STEPS[context.name])
    return context.default_agent()


@hookimpl
def chorus_register_agents() -> list[AgentSpec]:
    return [
        AgentSpec(name=name, description=DESCRIPTIONS[name], system_message=PROMPTS[name], factory=make_agent,
                  tools=("search_knowledge",) if name == "researcher" else (), team_only=True)
        for name in MEMBERS
    ]


@hookimpl
def chorus_register_teams() -> Sequence[TeamSpec]:
    return [TeamSpec(
        name=TEAM,
        display_name="Builder",
        description="Research, plan, check, code and sum up: a five-step pipeline that writes a program for you.",
        type="sequential",
        members=MEMBERS,
        starters=[
            Starter(label="A CLI tool", message="Build a command-line tool that counts words in text files"),
            Starter(label="A small web API", message="Build a small web API for todo items"),
            Starter(label="A game loop", message="Write a number guessing game"),
        ],
    )]


__all__ = ["FILE_CONVENTION", "MEMBERS", "TEAM", "Blueprint", "OfflineStep", "blueprint", "chorus_register_agents",
           "chorus_register_teams", "make_agent"]
