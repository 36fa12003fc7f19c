"""The invoice agent's tools, and the verification that guards them.

The verified customer lives in the conversation's ``ToolContext.state``, put there by
:func:`verify_customer` and by nothing else. No invoice tool takes a customer id, so the
model cannot ask for another customer's data; and every tool checks what the user typed
this turn (``ToolContext.user_message``): a message that names a different customer (an id,
an email, a phone) is refused outright, and an identity is only accepted when the user
typed it, never when a model or an injected text made it up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from chorus import ToolContext, ToolSpec
from chorus_music_store import _parse
from chorus_music_store._orders import Orders
from chorus_music_store._store import Customer, IdentityKind, MusicStore, StoreError, phone_digits

CUSTOMER = "music_store.customer"
PENDING = "music_store.pending"
MAX_FAILURES = 5

ASK_TO_VERIFY = (
    "Before I can share anything about invoices I need to verify who you are. Please reply with "
    "your **customer id**, the **email address** or the **phone number** on your account "
    "(for example “my email is …” or “my customer id is …”)."
)


ASK_TO_VERIFY_ORDER = (
    "Before I can place an order I need to verify who you are. Please reply with your **customer id**, the "
    "**email address** or the **phone number** on your account; then ask for the track again."
)


def verified(context: ToolContext) -> Customer | None:
    """The customer this conversation is verified as, if any. Kept as plain data in
    ``ToolContext.state``, so Chorus saves it with the conversation: it survives a resume and a
    restart, and an edit that rewinds past the verifying message takes it back."""
    saved = context.state.get(CUSTOMER)
    if isinstance(saved, Mapping):
        try:
            return Customer(**saved)
        except TypeError:  # saved by another version of this plugin: verify again
            return None
    return None


def _bind(context: ToolContext, customer: Customer) -> None:
    context.state[CUSTOMER] = dataclasses.asdict(customer)


def is_self(customer: Customer, kind: IdentityKind, value: str) -> bool:
    own: dict[IdentityKind, str] = {"id": str(customer.id), "email": customer.email, "phone": customer.phone or ""}
    return bool(own[kind]) and _parse.same_identity(kind, value, (kind, own[kind]))


class _Attempts:
    """Failed verifications per signed-in user (per conversation for anonymous visitors), in this
    process: a new conversation does not reset the count, so ids cannot be tried one by one."""

    def __init__(self, limit: int = MAX_FAILURES, window_s: float = 3600.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}

    @staticmethod
    def key(context: ToolContext) -> str:
        return f"thread:{context.thread_id}" if context.user_id == "anonymous" else f"user:{context.user_id}"

    def blocked(self, context: ToolContext) -> bool:
        now = time.monotonic()
        recent = [t for t in self._failures.get(self.key(context), []) if now - t < self.window_s]
        self._failures[self.key(context)] = recent
        return len(recent) >= self.limit

    def failed(self, context: ToolContext) -> None:
        self._failures.setdefault(self.key(context), []).append(time.monotonic())

    def clear(self, context: ToolContext) -> None:
        self._failures.pop(self.key(context), None)


ATTEMPTS = _Attempts()


def foreign_reference(context: ToolContext, customer: Customer) -> str | None:
    """A refusal when the user's message points at a customer other than the verified one."""
    for kind, value in _parse.identities(context.user_message):
        if not is_self(customer, kind, value):
            return (f"I can't help with that: this conversation is verified as customer {customer.id} "
                    f"({customer.name}), and I only share a customer's own invoices. I can't look up or "
                    "show another customer's information. To use another account, start a new conversation.")
    return None


def account_tools(get_store: Callable[[], MusicStore], orders: Orders | None = None) -> list[ToolSpec]:
    """The invoice tools over the store ``get_store`` returns, and with ``orders`` the tools that buy
    a track (placing an order waits for the customer's approval) and list what was bought here."""

    async def in_thread(call: Callable[[MusicStore], Any]) -> Any:
        return await asyncio.to_thread(lambda: call(get_store()))

    async def guarded(context: ToolContext, name: str, args: Mapping[str, Any],
                      answer: Callable[[Customer], Awaitable[str]], *, ordering: bool = False) -> str:
        """Run ``answer`` for the verified customer, or ask for verification and remember the request.
        An order (``ordering``) is never remembered: it is placed only by a call the customer approved."""
        customer = verified(context)
        if customer is None and ordering:
            return ASK_TO_VERIFY_ORDER
        if customer is None:
            others = _parse.identities(context.user_message)
            context.state[PENDING] = [name, dict(args)]
            if others:
                return ("I only share invoices with the customer they belong to, after verifying them. "
                        + ASK_TO_VERIFY)
            return ASK_TO_VERIFY
        refusal = foreign_reference(context, customer)
        if refusal:
            return refusal
        try:
            return await answer(customer)
        except StoreError as exc:
            return (f"Sorry, the music store is unavailable right now: {exc}. "
                    + ("Nothing was ordered." if ordering else "Please try again later."))

    # -- verification --------------------------------------------------------------------

    async def verify_customer(identifier: str, context: ToolContext) -> str:
        """Verify the customer by the customer id, email address or phone number THEY typed in the chat.
        Call it when the customer gives one of these; never guess or reuse an identifier."""
        identifier = identifier.strip()
        kind: IdentityKind
        if "@" in identifier:
            kind = "email"
        elif identifier.lstrip("#").isdigit() and len(identifier.lstrip("#")) <= 6:
            kind, identifier = "id", identifier.lstrip("#")
        elif len(phone_digits(identifier)) >= 7:
            kind = "phone"
        else:
            return "That is not a customer id, an email address or a phone number. " + ASK_TO_VERIFY
        current = verified(context)
        if current is not None:
            if is_self(current, kind, identifier):
                return f"You are already verified as {current.name} (customer {current.id})."
            return foreign_reference(context, current) or (
                f"This conversation is already verified as customer {current.id}; it cannot switch to "
                "another customer. Start a new conversation to use another account.")
        if not _parse.same_identity(kind, identifier, _parse.identification(context.user_message)):
            # Not what the user gave as their own this turn: a model's guess, text injected
            # elsewhere, or someone else's details ("show the invoices of x@y.com").
            return "I can only verify you with your own details, as you type them yourself. " + ASK_TO_VERIFY
        if ATTEMPTS.blocked(context):
            return ("Too many failed verification attempts. Please try again in an hour, or contact the "
                    "store's support team to access your account.")
        try:
            customer = await in_thread(lambda store: store.find_customer(kind, identifier))
        except StoreError as exc:
            return f"Sorry, the music store is unavailable right now: {exc}. Please try again later."
        if customer is None:
            ATTEMPTS.failed(context)
            return (f"I couldn't find an account with that {'customer id' if kind == 'id' else kind}. "
                    "Please check it and try again, or use another of your customer id, email or phone.")
        _bind(context, customer)
        ATTEMPTS.clear(context)
        greeting = (f"Thank you, {customer.first_name}: you are verified as customer {customer.id} "
                    "for this conversation.")
        pending = context.state.pop(PENDING, None)
        if isinstance(pending, list) and len(pending) == 2 and isinstance(pending[1], dict):
            name, args = pending
            follow = PENDING_HANDLERS.get(name)
            if follow is not None:
                try:
                    return f"{greeting}\n\n{await follow(customer, args)}"
                except StoreError as exc:
                    return f"{greeting}\n\nSorry, the music store is unavailable right now: {exc}."
        return f"{greeting} How can I help with your invoices?"

    # -- invoices ------------------------------------------------------------------------

    async def invoices_text(customer: Customer, args: Mapping[str, Any]) -> str:
        order = args.get("order", "newest")
        if order not in ("newest", "oldest", "total"):
            order = "newest"
        count, rows = await in_thread(lambda store: store.invoices(customer.id, order, limit=20))
        if not rows:
            return f"{customer.first_name}, you have no invoices yet."
        heading = {"newest": "newest first", "oldest": "oldest first", "total": "largest total first"}[order]
        table = "\n".join(f"| {r['invoice']} | {r['date']} | {r['items']} | {r['total']} |" for r in rows)
        more = f"\n\nShowing {len(rows)} of {count}." if count > len(rows) else ""
        return (f"Your invoices, {heading} ({count} in all):\n\n| Invoice | Date | Items | Total |\n"
                f"|---|---|---|---|\n{table}{more}")

    async def my_invoices(context: ToolContext, order: Literal["newest", "oldest", "total"] = "newest") -> str:
        """The verified customer's own invoices: by date (newest or oldest first) or by total."""
        args = {"order": order}
        return await guarded(context, "my_invoices", args, lambda c: invoices_text(c, args))

    def invoices_args(text: str) -> Mapping[str, Any] | None:
        order = _parse.invoices_order(text)
        return {"order": order} if order else None

    async def by_price_text(customer: Customer, _args: Mapping[str, Any]) -> str:
        rows = await in_thread(lambda store: store.purchases_by_unit_price(customer.id))
        if not rows:
            return f"{customer.first_name}, you have not bought anything yet."
        table = "\n".join(f"| {r['track']} | {r['artist'] or ''} | {r['unit_price']} | {r['quantity']} | "
                          f"{r['invoice']} ({r['date']}) |" for r in rows)
        return ("Your purchases, highest unit price first:\n\n| Track | Artist | Unit price | Qty | Invoice |\n"
                f"|---|---|---|---|---|\n{table}")

    async def my_purchases_by_unit_price(context: ToolContext) -> str:
        """The verified customer's purchased tracks, sorted by unit price (most expensive first)."""
        return await guarded(context, "my_purchases_by_unit_price", {}, lambda c: by_price_text(c, {}))

    def by_price_args(text: str) -> Mapping[str, Any] | None:
        return {} if _parse.asks_by_price(text) else None

    async def invoice_text(customer: Customer, args: Mapping[str, Any]) -> str:
        if args.get("invoice_id") is None:  # "my last order": the newest
            _count, newest = await in_thread(lambda store: store.invoices(customer.id, "newest", limit=1))
            if not newest:
                return "You have no invoices with us yet."
            invoice_id = int(newest[0]["invoice"])
        else:
            invoice_id = int(args["invoice_id"])
        found = await in_thread(lambda store: store.invoice_of(customer.id, invoice_id))
        if found is None:
            return (f"Invoice {invoice_id} is not one of your invoices. Ask for “my invoices” to see their "
                    "numbers.")
        employee = found["employee"]
        handled = (f"It was handled by **{employee['name']}** ({employee['title']}, {employee['email']})."
                   if employee else "No employee is recorded for it.")
        lines = "\n".join(f"- {x['track']}{' by ' + x['artist'] if x['artist'] else ''}: {x['unit_price']} × "
                          f"{x['quantity']}" for x in found["lines"])
        return f"Invoice **{found['invoice']}** of {found['date']}, total {found['total']}. {handled}\n\n{lines}"

    async def invoice_details(context: ToolContext, invoice_id: int | None = None) -> str:
        """One of the verified customer's invoices: its lines and the employee who handled it.
        Leave ``invoice_id`` out for their newest invoice ("who helped me with my last order?")."""
        args = {"invoice_id": invoice_id}
        return await guarded(context, "invoice_details", args, lambda c: invoice_text(c, args))

    def invoice_args(text: str) -> Mapping[str, Any] | None:
        number = _parse.invoice_number(text)
        if number is not None:
            return {"invoice_id": number}
        return {} if _parse.asks_latest_invoice(text) else None

    def verify_args(text: str) -> Mapping[str, Any] | None:
        found = _parse.identification(text)
        return {"identifier": found[1]} if found else None

    # -- orders ---------------------------------------------------------------------------

    async def order_track(context: ToolContext, title: str, artist: str | None = None) -> str:
        """Buy one track for the verified customer: it is added to their orders at the track's price.
        Give the artist too when several artists have a track of that title. The customer approves
        each order (this title and artist) on the page before it is placed."""
        async def place(customer: Customer) -> str:
            assert orders is not None
            found = await in_thread(lambda store: store.find_tracks(title, limit=20))
            exact = [t for t in found if t["name"].casefold() == title.strip().casefold()
                     and (not artist or (t.get("artist") or "").casefold() == artist.strip().casefold())]
            if not exact:
                names = ", ".join(f"“{t['name']}”" for t in found[:5])
                return (f"No track is called exactly “{title}”{f' by {artist}' if artist else ''}, so nothing was "
                        "ordered." + (f" Close titles: {names}." if names else ""))
            if len({(t.get("artist") or "") for t in exact}) > 1:  # what was approved must name one track
                choices = ", ".join(sorted({t.get("artist") or "unknown artist" for t in exact}))
                return (f"Several artists have a track called “{title}” ({choices}), so nothing was ordered: "
                        "ask again with the artist.")
            track = exact[0]
            number = await asyncio.to_thread(orders.place, customer.id, track)
            by = f" by {track['artist']}" if track.get("artist") else ""
            return (f"Order **{number}** is placed, {customer.first_name}: **{track['name']}**{by} for "
                    f"{track['price']}. It is on your next invoice.")
        return await guarded(context, "order_track", {"title": title, "artist": artist}, place, ordering=True)

    def order_args(text: str) -> Mapping[str, Any] | None:
        title = _parse.track_to_buy(text)
        return {"title": title} if title else None

    async def orders_text(customer: Customer, _args: Mapping[str, Any]) -> str:
        assert orders is not None
        rows = await asyncio.to_thread(orders.of, customer.id)
        if not rows:
            return f"{customer.first_name}, you have not ordered anything here yet."
        table = "\n".join(f"| {r['order']} | {r['track']} | {r['artist'] or ''} | {r['price']} | {r['placed_at']} |"
                          for r in rows)
        return ("Your orders, newest first:\n\n| Order | Track | Artist | Price | Placed |\n"
                f"|---|---|---|---|---|\n{table}")

    async def my_orders(context: ToolContext) -> str:
        """The tracks the verified customer ordered in the chat, newest first."""
        return await guarded(context, "my_orders", {}, lambda c: orders_text(c, {}))

    def my_orders_args(text: str) -> Mapping[str, Any] | None:
        return {} if re.search(r"\b(?:my|recent)\s+(?:new\s+)?orders?\s+(?:here|in the chat)"
                               r"|what (?:did|have) i ordere?d?|orders i placed",
                               text, re.I) else None

    PENDING_HANDLERS: dict[str, Callable[[Customer, Mapping[str, Any]], Awaitable[str]]] = {
        "my_orders": orders_text,
        "my_invoices": invoices_text,
        "my_purchases_by_unit_price": by_price_text,
        "invoice_details": invoice_text,
    }

    return [
        ToolSpec(verify_customer, keywords=("my email", "email is", "my customer id", "customer id is",
                                            "my phone", "phone number is", "i am customer", "i'm customer",
                                            "verify"),
                 offline_args=verify_args, examples=("My email is ana.souza@example.com",)),
        ToolSpec(my_invoices, keywords=("my invoices", "invoices", "invoice", "my purchases", "my orders",
                                        "what did i buy", "bought", "how much did i spend", "spent",
                                        "order history", "receipts"),
                 offline_args=invoices_args,
                 examples=("Show my invoices", "How much did I spend last time?", "Show me my past orders")),
        ToolSpec(my_purchases_by_unit_price, keywords=("unit price", "most expensive", "by price", "priciest",
                                                       "pay the most"),
                 offline_args=by_price_args,
                 examples=("Sort my purchases by unit price", "What's the most expensive thing I bought?")),
        ToolSpec(invoice_details, keywords=("invoice number", "who handled", "who helped", "employee", "support rep",
                                            "details of invoice", "what was on invoice", "last order"),
                 offline_args=invoice_args,
                 examples=("Who handled invoice 98?", "What was on invoice 2?", "Who helped me with my last order?")),
    ] + ([] if orders is None else [
        ToolSpec(order_track, keywords=("buy the song", "buy the track", "order the song", "order the track",
                                        "purchase the song", "purchase the track", "buy", "purchase"),
                 offline_args=order_args, requires_approval=True, examples=("Buy the song Black Dog",)),
        ToolSpec(my_orders, keywords=("what did i order", "what have i ordered", "orders i placed", "my orders here",
                                     "orders in the chat", "i ordered"),
                 offline_args=my_orders_args, examples=("What did I order?",)),
    ])
