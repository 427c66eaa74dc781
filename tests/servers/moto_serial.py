"""moto serving one request at a time, for DynamoDB.

The threaded moto_server evaluates a DynamoDB condition and then writes
without a lock, so two conditional writes that race can both succeed, which
DynamoDB itself never allows. Serving requests one by one restores that
guarantee for the lease tests. Usage: moto_serial.py HOST PORT
"""
import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

run_simple(sys.argv[1], int(sys.argv[2]), DomainDispatcherApplication(create_backend_app), threaded=False)
