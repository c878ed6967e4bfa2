"""Persistence: the database is the single source of truth (tables, migrations, atomic operations).

`db` builds engines and runs migrations, `models` holds the tables, `ops` the small one-transaction
operations every other part calls. The broker only ever carries row ids that point in here.
"""
