"""gunicorn settings for the prediction service (one CPU, 2 GiB in the sandbox)."""

bind = "127.0.0.1:8000"
# Two processes so a slow request (or a garbage collection) in one does not stall everything;
# threads so keep-alive connections do not each hold a whole process.
workers = 2
worker_class = "gthread"
threads = 4
keepalive = 5
timeout = 30
# Load the model once in the master, before forking: the workers share its memory, and the
# socket only opens once the model is ready.
preload_app = True
accesslog = None
errorlog = "-"
loglevel = "info"
