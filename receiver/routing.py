"""Route selection: which routes a whole notification group reaches. Pure.

A route matches on the group's groupLabels + commonLabels plus ``receiver`` (the webhook
path's receiver name, or the payload's), so a group is never split across routes.
First match wins unless the matching route says ``continue: true``; a route without
matchers matches everything (the default route).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from receiver.config import Route
from receiver.matchers import unquote_receiver
from receiver.model import Notification


@dataclass(frozen=True, slots=True)
class RouteMatch:
    index: int
    route: Route

    @property
    def key(self) -> str:
        """Stable identity of the route for threads and digests."""
        return self.route.name or f"routes[{self.index}]"


def group_labels_for_routing(labels: Mapping[str, str], receiver: str) -> dict[str, str]:
    out = dict(labels)
    if receiver:
        out.setdefault("receiver", unquote_receiver(receiver))
    return out


def select_routes(routes: Sequence[Route], labels: Mapping[str, str]) -> list[RouteMatch]:
    matched: list[RouteMatch] = []
    for i, route in enumerate(routes):
        if all(m.matches(labels) for m in route.matchers):
            matched.append(RouteMatch(i, route))
            if not route.continue_:
                break
    return matched


def routes_for(routes: Sequence[Route], n: Notification) -> list[RouteMatch]:
    return select_routes(routes, group_labels_for_routing(n.route_labels(), n.receiver))
