"""Flame graphs (icicles) of a profile's call stacks, one per thread, coloured by GIL state.

Python folds each thread's StackStats into a call tree and writes it as compact JSON; a
small inline script draws it as SVG in the page and makes it zoomable (no network, no
library). The tree keeps, for every frame, its self seconds per state; the script adds them
up, so a frame's bar is split into the states its time was spent in, in THREAD_STATES
order: a function that is half red is holding the GIL half of its time, whatever its
callees. Time the thread spent in a state that no stack explains hangs under the root as
"(no Python stack)", so each thread's graph adds up to its row of the threads table.

Size: a node narrower than MIN_SHARE of its thread's time could not be seen even zoomed in
a few times, and is folded into its caller's self time; if a thread still has more than
NODE_BUDGET frames, only the widest are kept. Either way the page says how many were folded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from .._model import THREAD_STATES, Frame, Profile, ThreadStats
from . import _figures as fig

NO_STACK = Frame("(no Python stack)", "", 0)
#: Frames smaller than this share of their thread's time are folded into their caller.
MIN_SHARE = 1e-4
#: At most this many frames are drawn per page (the widest of each thread, shared evenly
#: between threads, at least MIN_THREAD_NODES each): what keeps a page of many threads with
#: deep, varied stacks near a megabyte.
NODE_BUDGET = 24_000
MIN_THREAD_NODES = 1_000
_US_PER_S = 1_000_000


@dataclass
class _Node:
    frame: int  # index into the shared frame table; -1 for the thread's root
    parent: int
    self_us: dict[int, int] = field(default_factory=dict)  # state index -> microseconds
    children: dict[int, int] = field(default_factory=dict)  # frame index -> node index
    total_us: int = 0


@dataclass(frozen=True)
class ThreadFlame:
    """One thread's call tree, ready for the page."""

    name: str
    native_id: int
    total_s: float
    #: Pre-order, children widest first: ``[frame, distance back to the parent, state, us,
    #: state, us, ...]`` (distance 0 for the root).
    nodes: list[list[int]]
    folded: int  # frames folded into their callers to keep the page small


class FrameTable:
    """The frames shared by every flame graph of one page."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []
        self._index: dict[Frame, int] = {}

    def index(self, frame: Frame) -> int:
        if frame not in self._index:
            self._index[frame] = len(self.rows)
            self.rows.append([frame.function, frame.file, frame.line])
        return self._index[frame]


def thread_flames(
    profile: Profile, frames: FrameTable, budget: int = NODE_BUDGET
) -> list[ThreadFlame]:
    """A flame per thread that has any time, the threads table's order first; at most
    ``budget`` frames in all (see NODE_BUDGET)."""
    state_index = {state: i for i, state in enumerate(THREAD_STATES)}
    by_thread: dict[int, list[_Node]] = {}
    names = {t.native_id: t.name for t in profile.threads}
    for stack in profile.stacks:
        names.setdefault(stack.native_id, f"thread {stack.native_id}")
        nodes = by_thread.setdefault(stack.native_id, [_Node(-1, -1)])
        node = 0
        for frame in stack.frames:
            node = _child(nodes, node, frames.index(frame))
        _add(nodes[node], state_index.get(stack.state, state_index["unknown"]), stack.seconds)
    stats = {t.native_id: t for t in profile.threads}
    trees = []
    for native_id, name in names.items():
        nodes = by_thread.setdefault(native_id, [_Node(-1, -1)])
        if native_id in stats:
            _add_unexplained(nodes, stats[native_id], frames, state_index)
        _sum_totals(nodes)
        if nodes[0].total_us > 0:
            trees.append((native_id, name, nodes))
    per_thread = max(MIN_THREAD_NODES, budget // max(1, len(trees)))
    flames = []
    for native_id, name, nodes in trees:
        encoded, folded = _encode(nodes, per_thread)
        flames.append(ThreadFlame(name, native_id, nodes[0].total_us / _US_PER_S, encoded, folded))
    return flames


def _child(nodes: list[_Node], parent: int, frame: int) -> int:
    children = nodes[parent].children
    if frame not in children:
        children[frame] = len(nodes)
        nodes.append(_Node(frame, parent))
    return children[frame]


def _add(node: _Node, state: int, seconds: float) -> None:
    if seconds > 0:
        node.self_us[state] = node.self_us.get(state, 0) + round(seconds * _US_PER_S)


def _add_unexplained(
    nodes: list[_Node], stats: ThreadStats, frames: FrameTable, state_index: dict[str, int]
) -> None:
    """Hang the thread's time that no stack explains under "(no Python stack)"."""
    explained_us = [0] * len(THREAD_STATES)
    for node in nodes:
        for code, us in node.self_us.items():
            explained_us[code] += us
    no_stack: Optional[int] = None
    for state, seconds in fig.state_seconds(stats).items():
        index = state_index[state]
        missing_us = round(seconds * _US_PER_S) - explained_us[index]
        if missing_us > 1:
            if no_stack is None:
                no_stack = _child(nodes, 0, frames.index(NO_STACK))
            nodes[no_stack].self_us[index] = nodes[no_stack].self_us.get(index, 0) + missing_us


def _sum_totals(nodes: list[_Node]) -> None:
    # Children always come after their parent, so one backward pass adds everything up.
    for node in nodes:
        node.total_us = sum(node.self_us.values())
    for node in reversed(nodes[1:]):
        nodes[node.parent].total_us += node.total_us


def _encode(nodes: list[_Node], budget: int) -> tuple[list[list[int]], int]:
    """The kept nodes in pre-order, widest child first; folded nodes' time goes to their
    nearest kept ancestor's self time (the caller's bar stays as wide as before)."""
    root_us = nodes[0].total_us
    threshold_us = max(1, round(root_us * MIN_SHARE))
    keep = [n.total_us >= threshold_us for n in nodes]
    if sum(keep) > budget:
        # The widest ``budget`` frames, ties broken by creation order: a parent is created
        # before its children and is at least as wide, so it always ranks above them.
        ranked = sorted(range(len(nodes)), key=lambda i: (-nodes[i].total_us, i))
        keep = [False] * len(nodes)
        for index in ranked[:budget]:
            keep[index] = True
    # A child is never wider than its parent, so every kept node's parent is kept too.
    out: list[list[int]] = []
    folded = 0
    # Iterative pre-order walk: a deeply recursive program must not hit our recursion limit.
    pending: list[tuple[int, int]] = [(0, -1)]  # (node, its parent's position in out)
    while pending:
        index, parent_out = pending.pop()
        node = nodes[index]
        self_us = dict(node.self_us)
        kept = []
        for child in node.children.values():
            if keep[child]:
                kept.append(child)
            else:
                folded += _fold_into(nodes, child, self_us)
        # The parent as a distance back (mostly 1 or small): shorter than its position.
        row = [node.frame, len(out) - parent_out if parent_out >= 0 else 0]
        for state in sorted(self_us):
            row += [state, self_us[state]]
        position = len(out)
        out.append(row)
        # Pushed narrowest first, so the widest child is visited (and drawn) first.
        for child in sorted(kept, key=lambda c: nodes[c].total_us):
            pending.append((child, position))
    return out, folded


def _fold_into(nodes: list[_Node], index: int, self_us: dict[int, int]) -> int:
    """Add the subtree at ``index`` to ``self_us``; return how many frames it had."""
    count = 0
    pending = [index]
    while pending:
        node = nodes[pending.pop()]
        count += 1
        for state, us in node.self_us.items():
            self_us[state] = self_us.get(state, 0) + us
        pending.extend(node.children.values())
    return count


class FlameSet:
    """Every flame graph of one page, sharing one frame table; ``add`` returns each new
    graph's index (its element is ``flame-<index>``)."""

    def __init__(self) -> None:
        self.frames = FrameTable()
        self.flames: list[ThreadFlame] = []

    def add(self, profile: Profile) -> list[tuple[int, ThreadFlame]]:
        added = []
        for flame in thread_flames(profile, self.frames):
            added.append((len(self.flames), flame))
            self.flames.append(flame)
        return added

    def to_json(self, colours: dict[str, str], labels: dict[str, str]) -> str:
        """The JSON the page's script reads, safe inside a ``<script>`` element."""
        data = {
            "states": list(THREAD_STATES),
            "colours": [colours[state] for state in THREAD_STATES],
            "labels": [labels[state] for state in THREAD_STATES],
            "frames": self.frames.rows,
            "flames": [
                {"name": f.name, "total_s": f.total_s, "nodes": f.nodes} for f in self.flames
            ],
        }
        text = json.dumps(data, separators=(",", ":"))
        # Inside <script>, "</script>" or "<!--" in a name would end or bend the element:
        # JSON lets these characters be written as \u escapes, which the script reads as is.
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# The page's flame graph script. It reads the JSON of FlameSet.to_json from the element
# just before it and fills every .flame[data-flame=N] of its own report with an SVG icicle. Names go
# into the page as text nodes only (never as markup).
FLAME_SCRIPT = r"""
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg", ROW = 18;
  // This script follows its data inside its report's div: several reports on one page (a
  // notebook) each draw only their own graphs.
  var me = document.currentScript, root = me && me.parentNode;
  var source = me && me.previousElementSibling;
  if (!root || !source || source.className !== "gilwise-flames") { return; }
  var data = JSON.parse(source.textContent), S = data.states.length;
  var tip = document.createElement("div");
  tip.className = "flame-tip";
  root.appendChild(tip);

  function seconds(s) { return s.toFixed(3) + " s"; }
  function share(part, whole) { return whole > 0 ? (100 * part / whole).toFixed(1) + "%" : "n/a"; }
  function line(parent, text, cls) {
    var div = document.createElement("div");
    if (cls) { div.className = cls; }
    div.textContent = text;
    parent.appendChild(div);
    return div;
  }

  // "#zoom=F.N" opens flame graph F zoomed to its frame N; clicking keeps it current, so a
  // zoomed view can be bookmarked or sent.
  var asked = /^#zoom=(\d+)\.(\d+)$/.exec(window.location.hash);

  function Flame(el, flame, index) {
    var rows = flame.nodes, n = rows.length, i, k, s;
    var frame = new Int32Array(n), parent = new Int32Array(n), depth = new Int32Array(n);
    var byState = new Float64Array(n * S), total = new Float64Array(n), maxDepth = 0;
    for (i = 0; i < n; i++) {
      frame[i] = rows[i][0];
      parent[i] = i - rows[i][1];
      for (k = 2; k < rows[i].length; k += 2) {
        byState[i * S + rows[i][k]] += rows[i][k + 1] / 1e6;
      }
      if (i > 0) { depth[i] = depth[parent[i]] + 1; maxDepth = Math.max(maxDepth, depth[i]); }
    }
    // Rows come parent first, so one backward pass adds each frame's callees into it.
    for (i = n - 1; i > 0; i--) {
      for (s = 0; s < S; s++) { byState[parent[i] * S + s] += byState[i * S + s]; }
    }
    for (i = 0; i < n; i++) {
      for (s = 0; s < S; s++) { total[i] += byState[i * S + s]; }
    }
    var children = [];
    for (i = 0; i < n; i++) { children.push([]); }
    for (i = 1; i < n; i++) { children[parent[i]].push(i); }

    var svg = document.createElementNS(SVGNS, "svg");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "flame graph of " + flame.name);
    el.appendChild(svg);
    var zoomed = asked && Number(asked[1]) === index && Number(asked[2]) < n ? Number(asked[2]) : 0;

    function name(i) {
      return i === 0 ? "all: " + flame.name : data.frames[frame[i]][0];
    }
    function rect(g, x, y, w, colour) {
      var r = document.createElementNS(SVGNS, "rect");
      r.setAttribute("x", x.toFixed(1));
      r.setAttribute("y", y);
      r.setAttribute("width", Math.max(w, 0.5).toFixed(1));
      r.setAttribute("height", ROW - 1);
      r.setAttribute("fill", colour);
      g.appendChild(r);
    }
    function bar(i, x, w, dim) {
      var g = document.createElementNS(SVGNS, "g"), y = depth[i] * ROW, s, top = 0, x0 = x;
      g.setAttribute("data-node", i);
      if (dim) { g.setAttribute("class", "dim"); }
      var inner = w > 3 ? w - 1 : w;
      if (inner < 3) {
        for (s = 1; s < S; s++) { if (byState[i * S + s] > byState[i * S + top]) { top = s; } }
        rect(g, x, y, inner, data.colours[top]);
      } else {
        for (s = 0; s < S; s++) {
          var part = total[i] > 0 ? byState[i * S + s] / total[i] * inner : 0;
          if (part > 0) { rect(g, x0, y, part, data.colours[s]); x0 += part; }
        }
      }
      var chars = Math.floor((w - 6) / 6.5);
      if (chars >= 3) {
        var label = name(i), text = document.createElementNS(SVGNS, "text");
        text.setAttribute("x", (x + 3).toFixed(1));
        text.setAttribute("y", y + ROW - 5);
        text.textContent = label.length > chars ? label.slice(0, chars - 1) + "\u2026" : label;
        g.appendChild(text);
      }
      svg.appendChild(g);
    }
    function draw() {
      while (svg.firstChild) { svg.removeChild(svg.firstChild); }
      var width = Math.max(300, el.clientWidth || 1000), height = (maxDepth + 1) * ROW;
      svg.setAttribute("width", width);
      svg.setAttribute("height", height);
      svg.setAttribute("viewBox", "0 0 " + width + " " + height);
      for (var a = parent[zoomed]; zoomed > 0 && a >= 0; a = a > 0 ? parent[a] : -1) {
        bar(a, 0, width, true);
      }
      var scale = total[zoomed] > 0 ? width / total[zoomed] : 0, pending = [[zoomed, 0]];
      while (pending.length) {
        var item = pending.pop(), i = item[0], x = item[1], w = total[i] * scale;
        if (w < 0.5) { continue; }
        bar(i, x, w, false);
        var cx = x, kids = children[i];
        for (var c = 0; c < kids.length; c++) {
          pending.push([kids[c], cx]);
          cx += total[kids[c]] * scale;
        }
      }
      el.setAttribute("data-zoomed", zoomed);
    }
    function nodeAt(event) {
      var g = event.target.closest ? event.target.closest("g[data-node]") : null;
      return g ? Number(g.getAttribute("data-node")) : -1;
    }
    svg.addEventListener("click", function (event) {
      var i = nodeAt(event);
      if (i < 0) { return; }
      zoomed = i;
      draw();
      try {
        var here = window.location.pathname + window.location.search;
        window.history.replaceState(null, "", i > 0 ? "#zoom=" + index + "." + i : here);
      } catch (error) { /* a page opened from disk may refuse: zooming still works */ }
    });
    svg.addEventListener("mousemove", function (event) {
      var i = nodeAt(event);
      if (i < 0) { tip.style.display = "none"; return; }
      while (tip.firstChild) { tip.removeChild(tip.firstChild); }
      line(tip, name(i), "name");
      if (i > 0 && data.frames[frame[i]][1]) {
        line(tip, data.frames[frame[i]][1] + ":" + data.frames[frame[i]][2], "where");
      }
      line(tip, seconds(total[i]) + " \u00b7 " + share(total[i], total[0]) + " of the thread");
      for (var s = 0; s < S; s++) {
        var value = byState[i * S + s];
        if (value <= 0) { continue; }
        var row = line(tip, "", "state"), swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = data.colours[s];
        row.appendChild(swatch);
        row.appendChild(document.createTextNode(
          " " + data.labels[s] + ": " + seconds(value) + " (" + share(value, total[i]) + ")"));
      }
      tip.style.display = "block";
      var left = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
      var topPx = event.clientY + 16;
      if (topPx + tip.offsetHeight > window.innerHeight) {
        topPx = event.clientY - tip.offsetHeight - 8;
      }
      tip.style.left = Math.max(0, left) + "px";
      tip.style.top = Math.max(0, topPx) + "px";
    });
    svg.addEventListener("mouseleave", function () { tip.style.display = "none"; });
    draw();
    return draw;
  }

  var draws = [];
  var holders = root.querySelectorAll(".flame[data-flame]");
  for (var h = 0; h < holders.length; h++) {
    var index = Number(holders[h].getAttribute("data-flame"));
    if (data.flames[index]) { draws.push(Flame(holders[h], data.flames[index], index)); }
  }
  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () { draws.forEach(function (draw) { draw(); }); }, 100);
  });
})();
"""

FLAME_CSS = """
.flame { width: 100%; margin: 2px 0 14px; overflow: hidden; }
.flame svg { display: block; cursor: pointer; }
.flame svg text { font: 11px system-ui, sans-serif; fill: #111; pointer-events: none;
                  paint-order: stroke; stroke: rgba(255,255,255,.65); stroke-width: 2px; }
.flame svg g.dim { opacity: .55; }
.flame svg g:hover rect { filter: brightness(1.12); }
h3.flame-title { font-size: 14px; margin: 14px 0 2px; }
.flame-tip { position: fixed; display: none; z-index: 10; max-width: 520px; padding: 6px 9px;
             background: #fff; border: 1px solid #bbb; border-radius: 4px; font-size: 12px;
             box-shadow: 0 2px 8px rgba(0,0,0,.15); pointer-events: none; }
.flame-tip .name { font-weight: 700; word-break: break-all; }
.flame-tip .where { color: #666; word-break: break-all; }
.flame-tip .state { display: flex; align-items: center; gap: 4px; }
"""
