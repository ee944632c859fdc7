"""Synthetic org generator: N team workers with proportional teams, standalone workers and humans.

Proportions per 100 team workers: 10 teams (a leader and 10 workers each), 10 standalone Workers,
5 Humans, one Manager. Of the Humans, one in fifty is level 1 (admin-equivalent: it sits on every agent's
allow-lists, so its count multiplies the whole desired state — real orgs have a handful) and the rest
alternate between level 2 (a team and a worker) and level 3 (a worker). Deterministic for a given scale
and seed.

    python -m bench.generate 1000 /tmp/org-1000
    python -m bench.generate 1000 /tmp/heavy-1000 --level1-heavy     # 300 Humans, 76 of them level 1
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

RUNTIMES = ("openclaw", "copaw", "hermes")
MODELS = ("qwen3.6-plus", "claude-sonnet-4-6", "gpt-5-mini", "deepseek-chat")
SKILLS = ("github-operations", "git-delegation", "file-sharing", "task-management")
TEAM_SIZE = 10


def team_yaml(t: int, rng: random.Random, humans: int) -> str:
    lines = [
        "apiVersion: hiclaw.io/v1beta1",
        "kind: Team",
        "metadata:",
        f"  name: team-{t:05d}",
        "spec:",
        f"  description: Synthetic team {t}",
        f"  peerMentions: {'true' if t % 3 else 'false'}",
    ]
    if humans and t % 4 == 0:
        lines += ["  admin:", f"    name: human-{(t // 4) % humans:05d}"]
    lines += [
        "  leader:",
        f"    name: lead-{t:05d}",
        f"    model: {rng.choice(MODELS)}",
        "    heartbeat: {enabled: true, every: 10m}",
        "    soul: |",
        f"      You lead synthetic team {t}. Split work, review results, report upward.",
        "  workers:",
    ]
    for w in range(TEAM_SIZE):
        lines += [
            f"    - name: tw-{t:05d}-{w:02d}",
            f"      model: {rng.choice(MODELS)}",
            f"      runtime: {RUNTIMES[w % 3]}",
            f"      skills: [{rng.choice(SKILLS)}]",
            "      soul: |",
            f"        You are worker {w} of team {t}. Do careful, reviewable work.",
        ]
        if w == 0:
            lines += [
                "      mcpServers:",
                "        - name: github",
                "          url: http://aigw-local.hiclaw.io:8080/mcp-servers/github/mcp",
            ]
    return "\n".join(lines) + "\n"


def worker_yaml(i: int, rng: random.Random) -> str:
    return (
        "apiVersion: hiclaw.io/v1beta1\n"
        "kind: Worker\n"
        "metadata:\n"
        f"  name: worker-{i:05d}\n"
        "spec:\n"
        f"  model: {rng.choice(MODELS)}\n"
        f"  runtime: {RUNTIMES[i % 3]}\n"
        f"  skills: [{rng.choice(SKILLS)}, {rng.choice(SKILLS)}]\n"
        "  soul: |\n"
        f"    You are standalone worker {i}. You answer to the Manager.\n"
        "  expose:\n"
        "    - port: 8080\n"
    )


def human_yaml(h: int, teams: int, workers: int, level1_every: int = 50) -> str:
    level = 1 if h % level1_every == 0 else 2 + h % 2
    lines = [
        "apiVersion: hiclaw.io/v1beta1",
        "kind: Human",
        "metadata:",
        f"  name: human-{h:05d}",
        "spec:",
        f"  displayName: Human {h}",
        f"  email: human-{h:05d}@example.com",
        f"  permissionLevel: {level}",
    ]
    if level == 2 and teams:
        lines.append(f"  accessibleTeams: [team-{h % teams:05d}]")
    if level in (2, 3) and workers:
        lines.append(f"  accessibleWorkers: [worker-{h % workers:05d}]")
    return "\n".join(lines) + "\n"


MANAGER = """apiVersion: hiclaw.io/v1beta1
kind: Manager
metadata:
  name: default
spec:
  model: qwen3.6-plus
  runtime: openclaw
  skills: [worker-management]
"""


def generate(team_workers: int, out: Path, seed: int = 7, level1_heavy: bool = False) -> dict[str, int]:
    """Write the org under `out`; returns the counts of what it wrote. `level1_heavy`: per 100 team workers 20
    standalone Workers and 30 Humans, one in four of them level 1 — the case whose cost once grew with the square
    of memberships."""
    rng = random.Random(seed)
    teams = max(1, team_workers // TEAM_SIZE)
    workers = max(1, team_workers // (5 if level1_heavy else 10))
    humans = max(1, team_workers * 3 // 10 if level1_heavy else team_workers // 20)
    every = 4 if level1_heavy else 50
    for sub in ("teams", "workers", "humans"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "manager.yaml").write_text(MANAGER)
    for t in range(teams):
        (out / "teams" / f"team-{t:05d}.yaml").write_text(team_yaml(t, rng, humans))
    for i in range(workers):
        (out / "workers" / f"worker-{i:05d}.yaml").write_text(worker_yaml(i, rng))
    for h in range(humans):
        (out / "humans" / f"human-{h:05d}.yaml").write_text(human_yaml(h, teams, workers, every))
    return {"teams": teams, "team_workers": teams * TEAM_SIZE, "standalone_workers": workers, "humans": humans}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("team_workers", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--level1-heavy", action="store_true", help="30 Humans per 100 team workers, 1 in 4 level 1")
    args = parser.parse_args()
    print(generate(args.team_workers, args.out, args.seed, args.level1_heavy))


if __name__ == "__main__":
    main()
