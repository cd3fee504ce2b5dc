"""The AMI side of ivrpay: one link per process to the PBX, for take-back (see ``link``)."""

from ivrpay.ami.link import (
    AmiError,
    AmiLink,
    AmiRefused,
    AmiTarget,
    AmiTimeout,
    AmiUnavailable,
    LoginRefused,
    parse_ami_url,
)

__all__ = [
    "AmiError",
    "AmiLink",
    "AmiRefused",
    "AmiTarget",
    "AmiTimeout",
    "AmiUnavailable",
    "LoginRefused",
    "parse_ami_url",
]
