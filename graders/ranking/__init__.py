"""Ranking: NDCG and friends on hidden judgements, with bootstrap intervals."""

from graders.ranking.grader import RankingGrader, read_predictions

__all__ = ["RankingGrader", "read_predictions"]
