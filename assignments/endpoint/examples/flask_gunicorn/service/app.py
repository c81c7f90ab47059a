"""The Flask app: /health and /predict, JSON errors everywhere."""

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from service.model import Classifier
from service.validation import InvalidInput, parse_instances

MAX_BODY = 1024 * 1024  # a full batch is ~40 KB


def create_app(classifier: Classifier) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=exc.description), exc.code

    @app.errorhandler(InvalidInput)
    def invalid_input(exc: InvalidInput):
        return jsonify(error=str(exc)), 400

    @app.get("/health")
    def health():
        return jsonify(status="ok")

    @app.post("/predict")
    def predict():
        if not request.is_json:
            return jsonify(error="Content-Type must be application/json"), 415
        payload = request.get_json(silent=True)
        if payload is None:
            return jsonify(error="body is not valid JSON"), 400
        rows = parse_instances(payload)
        return jsonify(predictions=classifier.predict(rows))

    return app
