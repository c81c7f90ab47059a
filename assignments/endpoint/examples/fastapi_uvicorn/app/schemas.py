"""Request and response models of the prediction API."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

N_FEATURES = 20
MAX_BATCH = 64

# strict: "1.5" (a string) and true (a boolean) are refused, JSON integers are fine;
# allow_inf_nan=False: NaN, Infinity and 1e999 (which json.loads reads as inf) are refused
Feature = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Instance = Annotated[list[Feature], Field(min_length=N_FEATURES, max_length=N_FEATURES)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: Annotated[list[Instance], Field(min_length=1, max_length=MAX_BATCH)]


class Prediction(BaseModel):
    label: int
    probabilities: list[float]


class PredictResponse(BaseModel):
    predictions: list[Prediction]
