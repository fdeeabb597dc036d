"""Operations: crisis alerts on negative spikes, insights (hot terms), ops routes.

The pipeline calls :func:`record_message` once per handled message; the composition
root calls :func:`register_ops_routes` (routes, plus the alert monitor in worker roles).
"""

from bot.ops.insights import record_first_response
from bot.ops.recorder import record_message
from bot.ops.routes import register_ops_routes

__all__ = ["record_first_response", "record_message", "register_ops_routes"]
