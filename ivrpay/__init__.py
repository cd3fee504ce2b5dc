"""ivrpay: IVR card payments for call centres on Asterisk."""

__version__ = "0.1.0"
