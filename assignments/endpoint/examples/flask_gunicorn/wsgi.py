"""WSGI entry point: the app with the model from MODEL_DIR (gunicorn wsgi:app)."""

from service.app import create_app
from service.model import Classifier, model_dir

app = create_app(Classifier.from_dir(model_dir()))
