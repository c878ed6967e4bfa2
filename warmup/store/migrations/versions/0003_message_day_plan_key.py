"""A message's day plan and number checked by one foreign key.

`outbound_messages` referenced `numbers` and `day_plans` with two foreign keys, so every message row
written cost PostgreSQL two referential-integrity look-ups (about half the cost of storing a planned day's
messages). One composite key, (day_plan_id, number_id) -> day_plans (id, number_id), makes one look-up
check both, and checks more than before: a message's number is its day plan's number. `day_plans` gets
the unique index on (id, number_id) a foreign key needs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 11:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite keeps 0001's foreign keys unnamed: batch mode names what it reflects by this convention
_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
_OLD_KEYS = {
    "postgresql": ("outbound_messages_number_id_fkey", "outbound_messages_day_plan_id_fkey"),
    "sqlite": ("fk_outbound_messages_number_id_numbers", "fk_outbound_messages_day_plan_id_day_plans"),
}


def _old_keys() -> tuple[str, str]:
    dialect = op.get_bind().dialect.name
    return _OLD_KEYS.get(dialect, _OLD_KEYS["sqlite"])


def upgrade() -> None:
    # a unique index, not a constraint: SQLite adds one without rebuilding the table (a rebuild would
    # drop day_plans under the messages' foreign key); both databases accept it as a key's target
    op.create_index("uq_day_plans_id_number", "day_plans", ["id", "number_id"], unique=True)
    with op.batch_alter_table("outbound_messages", schema=None, naming_convention=_NAMES) as batch_op:
        for name in _old_keys():
            batch_op.drop_constraint(name, type_="foreignkey")
        batch_op.create_foreign_key(
            "fk_outbound_day_plan_number", "day_plans", ["day_plan_id", "number_id"], ["id", "number_id"]
        )


def downgrade() -> None:
    number_key, day_plan_key = _old_keys()
    with op.batch_alter_table("outbound_messages", schema=None, naming_convention=_NAMES) as batch_op:
        batch_op.drop_constraint("fk_outbound_day_plan_number", type_="foreignkey")
        batch_op.create_foreign_key(number_key, "numbers", ["number_id"], ["id"])
        batch_op.create_foreign_key(day_plan_key, "day_plans", ["day_plan_id"], ["id"])
    op.drop_index("uq_day_plans_id_number", table_name="day_plans")
