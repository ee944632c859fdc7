"""hiclaw-gitops: a GitOps reconciler for HiClaw org charts (Worker, Team, Human, Manager)."""

__version__ = "0.1.0"
API_VERSION = "hiclaw.io/v1beta1"
KINDS = ("Worker", "Team", "Human", "Manager")
ANNOTATION_PREFIX = "gitops.hiclaw.io/"
