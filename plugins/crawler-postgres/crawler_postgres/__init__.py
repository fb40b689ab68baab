"""crawler-postgres: a PostgreSQL sink for crawler, found through the ``crawler.sinks`` entry points under the
URI schemes ``postgresql://`` and ``postgres://``.

``crawler -o 'postgresql://user@host:5432/dbname?table=items' ...`` upserts each item on its key into a table with
a JSONB ``item`` column; see :class:`PostgresSink`.
"""

from crawler_postgres._sink import PostgresSink

__all__ = ["PostgresSink"]
