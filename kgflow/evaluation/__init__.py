"""Full-ranking evaluation with masking of known items, per user group."""
from kgflow.evaluation.ranking import CSR, EvalTask, RankingEvaluator

__all__ = ["CSR", "EvalTask", "RankingEvaluator"]
