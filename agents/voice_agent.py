"""VoiceAgent: turns the operator's commands into ``command/<unit>`` posts, or ``veto/voice`` with a reason.

Scripted voice events carry the operator's command (``{"unit": ..., "settings": {...}}``) or a search
of the inspection history (``query``: "gears with a crack near the rim"), which goes to ``query/parts``
for the InspectionAgent to answer with CLIP retrieval. Speech recognition that produces such commands
from audio plugs in here.
"""

from __future__ import annotations

from agents.arbitration import validate_operator_command
from agents.blackboard import Entry, Post
from environments.errors import ShopfloorInputError

QUERY_TOP_K = 10  # parts an operator's search returns


class VoiceAgent:
    def __init__(self):
        self.name, self.subscribes = "voice", ("event/voice",)
        self.accepted = self.rejected = 0

    def decide(self, tick: int, inbox: list[Entry]) -> list[Post]:
        posts = []
        for event in inbox:
            if event.topic != "event/voice":
                continue
            if event.value.get("query"):
                posts.append(Post("query/parts", event.key, {"text": event.value["query"], "k": QUERY_TOP_K}))
            if not event.value.get("command"):
                continue
            command = event.value["command"]
            unit, settings = command.get("unit"), command.get("settings")
            try:
                validate_operator_command(str(unit), settings)
            except ShopfloorInputError as exc:
                self.rejected += 1
                posts.append(Post("veto/voice", event.key, {"command": command, "reason": str(exc)}))
                continue
            self.accepted += 1
            posts.append(Post(f"command/{unit}", "operator", settings))
        return posts
