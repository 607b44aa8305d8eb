"""VoiceAgent: turns the operator's commands into ``command/<unit>`` posts, or ``veto/voice`` with a reason.

Scripted voice events carry the operator's command (``{"unit": ..., "settings": {...}}``); speech
recognition that produces such commands from audio plugs in here.
"""

from __future__ import annotations

from agents.arbitration import validate_operator_command
from agents.blackboard import Entry, Post
from environments.errors import ShopfloorInputError


class VoiceAgent:
    def __init__(self):
        self.name, self.subscribes = "voice", ("event/voice",)
        self.accepted = self.rejected = 0

    def decide(self, tick: int, inbox: list[Entry]) -> list[Post]:
        posts = []
        for event in inbox:
            if event.topic != "event/voice":
                continue
            command = event.value.get("command") or {}
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
