"""What every Avisos service shares, and nothing else.

* :mod:`avisos_common.messages`: typed payloads for every message that crosses the bus.
* :mod:`avisos_common.topology`: the RabbitMQ exchanges and queues, declared in one place.
* :mod:`avisos_common.amqp`: a confirming publisher and a consumer base that owns ack/retry.
* :mod:`avisos_common.settings`: the settings base (fails fast on placeholder secrets).
* :mod:`avisos_common.logging`: JSON logs carrying request, connection, queue and message ids.
"""
