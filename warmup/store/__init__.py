"""Persistence: the database is the single source of truth, and only this package runs SQL.

`db` builds engines and runs migrations, `models` holds the tables, `tables` what every module here
shares. Each other module is one concept; each operation is ONE short transaction, never held across
I/O, and the broker only ever carries row ids that point in here:

    numbers   enrolling and configuring numbers, their ramp state, the active set
    days      planning a day (one number or a batch), cutting its quota, which days are unplanned
    sends     what a planned send is; adding sends to a planned day (a reply may make an opener give way)
    respread  re-spreading the rest of a resumed day
    queue     due messages handed to the broker, lost ones found again, how late the queue runs
    claims    taking a message for sending (one or a batch): due, window, quota, pace and portfolio
    portfolios  Meta business portfolios: their tiers and the messaging limit their numbers share
    accounts  each number-day's quota accounted for: sent, failed, unknown, skipped by cause
    outcomes  recording what became of a send; stale claims; late confirmation of `unknown` sends
    expiry    skipping what is left of a day
    pauses    pausing, resuming, retiring and reactivating numbers
    fleet_sync  `warmup apply`'s single transaction: numbers, portfolios, admins and audit rows at once
    readings  risk-meter readings
    inbound   inbound events and recipients
    history   a day's messages and outcome
    facts     what batch planning reads of a batch of numbers
    audit     the audit log
    checks    read-only queries that check and watch a run (invariants, the demo)

Message state machine (`OutboundMessage.state`)::

    planned --mark_queued--> queued --claim--> sending --record_sent-----> sent
       |                       |  ^               |  --record_failed---> failed   (slot stays used)
       |                       |  |               |  --record_unknown--> unknown  (slot used, never re-sent)
       |                       |  +--release_for_retry, give_back (slot freed)
       |                       |                  +--record_skipped--> skipped  (slot freed)
       +-----------------------+--claim refused (paused / quota / day over / window closed),
                                  skip_remaining, pause_numbers, expire_day, cut_quota --> skipped
    sending --recover_stale--> unknown;   unknown --record_sent, confirm_unknown--> sent (a late confirmation)

Quota accounting: `DayPlan.used` is the number of slots taken on that local day. A claim takes one
(`used = used + 1 WHERE used < quota`, atomic under READ COMMITTED on PostgreSQL and under BEGIN
IMMEDIATE on SQLite) and only the paths where nothing went out give it back. So `used` never exceeds
`quota`, whatever crashes, retries or parallel workers happen (a CHECK constraint backs this). The
day's messages that are not skipped never outnumber its quota either (`sends`, `days.cut_quota`).

Lock order: rows are locked number -> pace -> portfolio -> message -> day plan, everywhere (a record
frees the pace before it touches the message; only a claim and the fleet sync lock a portfolio), and
several rows of one table
in id order. A claim reads its number row `FOR SHARE` before it touches the message; every writer that
changes a number or adds to, trims or re-times its day locks the number row first. So no two writers
deadlock, and once a pause has committed no claim of that number can succeed any more.

Times: every `now` is an aware datetime from the run's `Clock` (simulated time in tests and benchmarks);
the store reads the wall clock only for bookkeeping columns (`created_at`, `updated_at`) when no `now`
is given.
"""
