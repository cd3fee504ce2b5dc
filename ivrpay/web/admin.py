"""The admin's pages (users, API keys and webhooks, prompts, reviews, the audit log)."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
