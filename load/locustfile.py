"""Locust users of an omnistock sale: storefronts, an OMS, and store operations.

    locust -f load/locustfile.py --host URL [--shape flash] [options]    (or: python -m load.run)

Users (all `FastHttpUser`, requests named by route template so stats group per endpoint):

* `StorefrontUser` (storefront key): a product page (`GET /v1/availability/[sku]`), a category
  page of 24 SKUs (`POST /v1/availability/query`), "near me" (`GET
  /v1/availability/[sku]?near=lat,lon&radius_km=R`), and a delivery quote (`POST
  /v1/routing/quote`). SKUs by Zipf demand over the seeded catalogue; customers around stores.
* `OmsUser` (oms key): places an order of 1 to 3 lines (`POST /v1/orders`, routed and reserved;
  one in ten a click & collect order at a pickup store), waits for the payment, then commits
  the reservation it got (`commit-share`) or releases it.
* `StoreOpsUser` (oms key): till sales (`POST /v1/stock/adjustments`, reason `sale`), returns,
  damage, deliveries (`receipt`), click & collect holds placed -> ready -> collect (or cancel;
  some sourced by transfer into the store, which is then shipped and received first), and
  replenishment transfers warehouse -> store, requested -> ship -> receive (one in twenty
  arrives a unit short: a recorded loss).

Outcomes (`load.outcomes`): 409 for short stock is a success counted in its own stats row with
the suffix ` (409 short)`; so is an illegal transition where a race makes it legitimate (a
commit or release after the reservation expired: ` (409 conflict)`). Everything else that is
not 2xx, and every transport error, is a failure. Stock-changing POSTs carry an
Idempotency-Key and are retried under it when their outcome is unknown (`load.calls`); every
change of on_hand + inbound is recorded in `--changes-dir` for the runner's conservation check.

Shapes: `--shape steady` (default) holds `-u` users for `-t`; `--shape flash` holds them, then
from `--spike-at` for `--spike-for` (shares of `-t`, default 60 s) adds `--spike-users - 1`
times as many OMS users, all of them three times as eager (a third of the pause between
orders), whose orders go `--spike-hot-share` of the time to the manifest's hot SKUs, a limited
drop that sells out (storefronts look at them too), then drops back to steady.

Options (locust arguments; each also an environment variable, shown in brackets):

    --storefront-weight 6 [LOAD_STOREFRONT_WEIGHT]   --oms-weight 3 [LOAD_OMS_WEIGHT]
    --store-ops-weight 1 [LOAD_STORE_OPS_WEIGHT]     user mix (weights)
    --storefront-wait 0.5,2 [LOAD_STOREFRONT_WAIT]   think time between tasks, MIN,MAX s
    --oms-wait 1,3 [LOAD_OMS_WAIT]                   --store-ops-wait 1,4 [LOAD_STORE_OPS_WAIT]
    --step-wait 0.2,1 [LOAD_STEP_WAIT]               between the steps of one flow
    --commit-share 0.85 [LOAD_COMMIT_SHARE]          --order-ttl 600 [LOAD_ORDER_TTL_S]
    --shape steady|flash [LOAD_SHAPE]                --spike-at 0.4 [LOAD_SPIKE_AT]
    --spike-for 0.25 [LOAD_SPIKE_FOR]                --spike-users 2.0 [LOAD_SPIKE_USERS]
    --spike-hot-share 0.9 [LOAD_SPIKE_HOT_SHARE]
    --manifest PATH [LOAD_MANIFEST]                  written by `python -m load.seed`
    --changes-dir DIR [LOAD_CHANGES_DIR]             empty: changes are not recorded
    --storefront-key [LOAD_STOREFRONT_KEY]           --oms-key [LOAD_OMS_KEY]  (prefer the env)
    --request-timeout 10 [LOAD_REQUEST_TIMEOUT_S]
"""

from __future__ import annotations

import logging
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from locust import FastHttpUser, LoadTestShape, events, task
from locust.runners import MasterRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the `load` package

from load import manifest, phase, settings
from load.calls import Caller
from load.changes import ChangeLog
from load.outcomes import Outcome
from load.picks import Catalogue, Picker

log = logging.getLogger("load")
SHORT = (Outcome.SHORT,)
EXPIRED = (Outcome.CONFLICT,)  # a reservation can expire before it is committed or released
PICKUP_ORDER_SHARE = 0.1
TRANSFER_HOLD_SHARE = 0.3
LOSS_SHARE = 0.05
COLLECT_SHARE = 0.9
DEFAULT_FLASH_S = 60.0
SPIKE_EAGERNESS = 3  # shoppers of a flash sale come back three times as fast


@dataclass
class Shared:
    """What every user of this process shares: options, the catalogue, keys, the change log."""

    opts: object
    catalogue: Catalogue
    changes: ChangeLog | None
    waits: dict[str, tuple[float, float]]


shared: Shared | None = None


@events.init_command_line_parser.add_listener
def _add_options(parser) -> None:
    for o in settings.OPTIONS:
        extra = {"choices": o.choices} if o.choices else {}
        parser.add_argument(
            o.flag, type=o.type, default=o.default, env_var=o.env, help=o.help,
            is_secret=o.secret, **extra,
        )  # fmt: skip


@events.init.add_listener
def _init(environment, **_) -> None:
    global shared
    opts = environment.parsed_options
    StorefrontUser.weight = opts.storefront_weight
    OmsUser.weight = opts.oms_weight
    StoreOpsUser.weight = opts.store_ops_weight
    for user in (StorefrontUser, OmsUser, StoreOpsUser):
        user.network_timeout = user.connection_timeout = opts.request_timeout
    waits = {
        name: settings.wait_range(getattr(opts, f"{name}_wait"))
        for name in ("storefront", "oms", "store_ops", "step")
    }
    if isinstance(environment.runner, MasterRunner):
        return  # the master runs no users: no manifest or keys needed here
    environment.runner.register_message(phase.MESSAGE, phase.on_message)
    missing = [f for f in ("storefront_key", "oms_key") if not getattr(opts, f)]
    if missing:
        sys.exit(f"load: set {', '.join(missing)} (LOAD_STOREFRONT_KEY, LOAD_OMS_KEY)")
    try:
        catalogue = Catalogue(manifest.read(Path(opts.manifest)))
    except (OSError, ValueError, KeyError) as exc:
        sys.exit(f"load: cannot read the manifest {opts.manifest}: {exc}")
    changes = ChangeLog(Path(opts.changes_dir)) if opts.changes_dir else None
    shared = Shared(opts, catalogue, changes, waits)


@events.quitting.add_listener
def _close(**_) -> None:
    if shared is not None and shared.changes is not None:
        shared.changes.close()


class _User(FastHttpUser):
    abstract = True
    role = "oms"
    wait_name = ""

    def on_start(self) -> None:
        assert shared is not None
        self.rng = random.Random()
        self.pick = Picker(shared.catalogue, self.rng)
        key = shared.opts.storefront_key if self.role == "storefront" else shared.opts.oms_key
        self.api = Caller(self.client, key, self.role, shared.changes)

    def wait_time(self) -> float:
        assert shared is not None
        return self.rng.uniform(*shared.waits[self.wait_name])

    def step(self) -> None:
        """The pause between two steps of one flow (a payment, a pick, a drive)."""
        assert shared is not None
        time.sleep(self.rng.uniform(*shared.waits["step"]))


class StorefrontUser(_User):
    weight = 6
    role = "storefront"
    wait_name = "storefront"

    def _sku(self) -> str:
        if phase.current == phase.SPIKE and self.rng.random() < 0.5:
            return self.pick.hot_sku()
        return self.pick.sku()

    @task(5)
    def product_page(self) -> None:
        self.api.get(f"/v1/availability/{self._sku()}", "/v1/availability/[sku]")

    @task(2)
    def category_page(self) -> None:
        body = {"skus": self.pick.page(24)}
        self.api.query("/v1/availability/query", "/v1/availability/query", body)

    @task(2)
    def near_me(self) -> None:
        where = self.pick.customer().query()
        radius = self.rng.choice((25, 50, 100))
        self.api.get(
            f"/v1/availability/{self._sku()}?near={where}&radius_km={radius}",
            "/v1/availability/[sku]?near",
        )

    @task(1)
    def delivery_quote(self) -> None:
        lines = [{"sku": s, "qty": 1} for s in self.pick.skus(self.rng.randint(1, 3))]
        body = {"lines": lines, "destination": self.pick.customer().body()}
        self.api.query("/v1/routing/quote", "/v1/routing/quote", body)


class OmsUser(_User):
    weight = 3
    wait_name = "oms"

    def wait_time(self) -> float:
        pause = super().wait_time()
        return pause / SPIKE_EAGERNESS if phase.current == phase.SPIKE else pause

    def _lines(self, spike: bool) -> list[dict]:
        assert shared is not None
        if spike and self.rng.random() < shared.opts.spike_hot_share:
            return [{"sku": self.pick.hot_sku(), "qty": self.rng.choice((1, 1, 2, 3))}]
        n = self.rng.choices((1, 2, 3), (6, 3, 1))[0]
        return [
            {"sku": s, "qty": 1 if self.rng.random() < 0.8 else self.rng.randint(2, 3)}
            for s in self.pick.skus(n)
        ]

    @task
    def order(self) -> None:
        assert shared is not None
        spike = phase.current == phase.SPIKE
        body: dict = {
            "order_id": f"ord-{self.rng.getrandbits(64):016x}",
            "lines": self._lines(spike),
            "ttl_s": shared.opts.order_ttl,
        }
        if not spike and shared.catalogue.pickup_stores and self.rng.random() < PICKUP_ORDER_SHARE:
            body["pickup_node_id"] = self.rng.choice(shared.catalogue.pickup_stores).node_id
        else:
            body["destination"] = self.pick.customer().body()
        placed = self.api.change("/v1/orders", "/v1/orders", body, ok=(201,), expected=SHORT)
        if placed.outcome is not Outcome.OK:
            return
        order = placed.json()
        reservation = order["reservation_id"]
        gone = [
            (s["node_id"], line["sku"], -line["qty"])
            for s in order["plan"]["shipments"]
            for line in s["lines"]
        ]
        self.step()  # the payment
        if self.rng.random() < shared.opts.commit_share:
            self.api.change(
                f"/v1/reservations/{reservation}/commit",
                "/v1/reservations/[id]/commit",
                ok=(200,),
                expected=EXPIRED,
                kind="commit",
                effects=gone,
            )
        else:
            self.api.change(
                f"/v1/reservations/{reservation}/release",
                "/v1/reservations/[id]/release",
                ok=(200,),
                expected=EXPIRED,
            )


class StoreOpsUser(_User):
    weight = 1
    wait_name = "store_ops"

    def _adjust(self, reason: str, lines: list[tuple[str, str, int]]) -> None:
        body = {
            "adjustments": [
                {"node_id": n, "sku": s, "delta": d, "reason": reason, "ref": f"load-{reason}"}
                for n, s, d in lines
            ]
        }
        self.api.change(
            "/v1/stock/adjustments",
            "/v1/stock/adjustments",
            body,
            ok=(200,),
            expected=SHORT,
            kind=reason,
            effects=lines,
        )

    @task(6)
    def till_sale(self) -> None:
        picked = self.pick.store_sku()
        if picked is None:
            return
        store, sku = picked
        basket = [(store, sku, -1)]
        if self.rng.random() < 0.3:
            other = self.rng.choice(self.pick.c.manifest.stocked[store])
            if other != sku:
                basket.append((store, other, -1))
        self._adjust("sale", basket)

    @task(1)
    def return_or_damage(self) -> None:
        picked = self.pick.store_sku()
        if picked is not None:
            store, sku = picked
            if self.rng.random() < 0.5:
                self._adjust("return", [(store, sku, 1)])
            else:
                self._adjust("damage", [(store, sku, -1)])

    @task(1)
    def delivery(self) -> None:
        picked = self.pick.store_sku()
        if picked is not None:
            store, _ = picked
            skus = {self.rng.choice(self.pick.c.manifest.stocked[store]) for _ in range(3)}
            self._adjust("receipt", [(store, s, self.rng.randint(6, 24)) for s in sorted(skus)])

    @task(2)
    def click_and_collect(self) -> None:
        picked = self.pick.store_sku(pickup=True)
        if picked is None:
            return
        store, sku = picked
        body = {
            "store_id": store,
            "lines": [{"sku": sku, "qty": self.rng.choice((1, 1, 2))}],
            "customer_ref": f"cust-{self.rng.getrandbits(32):08x}",
            "pickup_window_s": 3600,
            "allow_transfer": self.rng.random() < TRANSFER_HOLD_SHARE,
        }
        placed = self.api.change("/v1/holds", "/v1/holds", body, ok=(201,), expected=SHORT)
        if placed.outcome is not Outcome.OK:
            return
        hold = placed.json()
        hold_id = hold["hold_id"]
        if hold.get("transfer_id") and not self._move(hold["transfer_id"], store):
            # Not shipped, or arrived short: a short hold cannot be made ready, so the store
            # cancels it and tells the customer.
            self._hold_step(hold_id, "cancel")
            return
        self.step()  # picking
        ready = self._hold_step(hold_id, "ready")
        if ready.outcome is not Outcome.OK:
            self._hold_step(hold_id, "cancel")
            return
        handed = [(store, line["sku"], -line["held"]) for line in ready.json()["lines"]]
        self.step()  # the customer arrives
        if self.rng.random() < COLLECT_SHARE:
            self._hold_step(hold_id, "collect", handed)
        else:
            self._hold_step(hold_id, "cancel")

    def _hold_step(self, hold_id: str, action: str, effects=None):
        return self.api.change(
            f"/v1/holds/{hold_id}/{action}",
            f"/v1/holds/[id]/{action}",
            ok=(200,),
            kind="collect" if effects else None,
            effects=effects,
        )

    @task(1)
    def replenish(self) -> None:
        picked = self.pick.replenishment()
        if picked is None:
            return
        warehouse, store, sku = picked
        body = {
            "from_node": warehouse,
            "to_node": store,
            "lines": [{"sku": sku, "qty": self.rng.randint(2, 10)}],
            "reason": "replenishment",
        }
        asked = self.api.change("/v1/transfers", "/v1/transfers", body, ok=(201,), expected=SHORT)
        if asked.outcome is Outcome.OK:
            self._move(asked.json()["transfer_id"], store)

    def _move(self, transfer_id: str, store: str) -> bool:
        """Ships a requested transfer and receives it at `store`, sometimes a unit short; True
        only when everything shipped was received."""
        shipped = self.api.change(
            f"/v1/transfers/{transfer_id}/ship", "/v1/transfers/[id]/ship", ok=(200,)
        )
        if shipped.outcome is not Outcome.OK:
            return False
        lines = shipped.json()["lines"]
        self.step()  # on the road
        body, lost = None, []
        if self.rng.random() < LOSS_SHARE:
            body = {"lines": [{"sku": x["sku"], "qty": max(0, x["shipped"] - 1)} for x in lines]}
            lost = [(store, x["sku"], -1) for x in lines if x["shipped"] > 0]
        received = self.api.change(
            f"/v1/transfers/{transfer_id}/receive",
            "/v1/transfers/[id]/receive",
            body,
            ok=(200,),
            kind="loss" if lost else None,
            effects=lost or None,
        )
        return received.outcome is Outcome.OK and not lost


class TrafficShape(LoadTestShape):
    """`steady`: `-u` users at `-r` per second for `-t` (no end without it). `flash`: the same,
    with a spike of OMS users in the middle (see the module docstring), for `-t` (default 60 s).
    Locust hands `-u`, `-r` and `-t` to the shape (`use_common_options`) and leaves ending the
    run to it."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self._announced = phase.STEADY

    def tick(self):
        opts = self.runner.environment.parsed_options
        users = max(1, opts.num_users or 1)
        rate = max(0.1, float(opts.spawn_rate or 1))
        t = self.get_run_time()
        if opts.shape != "flash":
            # With a shape, locust leaves ending the run to it: -t is read here.
            return None if opts.run_time and t >= opts.run_time else (users, rate)
        now = phase.flash_phase(
            t, float(opts.run_time or DEFAULT_FLASH_S), opts.spike_at, opts.spike_for
        )
        if now is None:
            return None
        if now != self._announced:
            self._announced = now
            phase.set_phase(now)
            self.runner.send_message(phase.MESSAGE, now)
            log.info("flash sale: %s phase", now)
        classes = self.runner.user_classes
        if now == phase.SPIKE:
            extra = max(1, round(users * (opts.spike_users - 1.0)))
            return users + extra, max(rate, extra / 2.0), [OmsUser]
        return users, max(rate, 5.0), list(classes)
