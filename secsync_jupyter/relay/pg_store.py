"""PostgreSQL store (``postgresql://…``): asyncpg, a connection pool, group commit, the
acceptance rules enforced by the database.

* **Writes** go to one of ``writers`` *lanes* chosen by the document (so a document's writes
  are committed in the order they were submitted). A lane takes every write waiting for it (up
  to ``max_batch``, and about ``max_batch_chars`` of messages), runs them in one transaction on
  a pooled connection and commits once; only then are their awaitables resolved:
  acknowledgements follow the ``COMMIT``, and many messages share one commit (with
  ``synchronous`` full, the default, the commit does not wait for its WAL flush: the writes'
  ``on_committed`` run after it, their awaitables resolve after a *flush barrier*, see
  :class:`PostgresStore` and docs/relay.md "Durability on PostgreSQL"). Lanes of one
  process, and the lanes of other relay processes on the same database, run concurrently. A
  batch of updates only (the usual one) is one statement, ``save_updates``, sent outside a
  transaction block: one round trip, committed by the server before it answers, so no lock is
  held while this process's event loop is busy elsewhere.
* **The rules hold across processes** because they are checked inside the transaction, under a
  transaction-scoped advisory lock per document (``pg_advisory_xact_lock``, taken for every
  document of a batch in one sorted order, so two batches never deadlock), and backed by
  constraints: ``documents.active_snapshot`` (one active snapshot per document, a snapshot of
  that document), ``UNIQUE (doc_id, snapshot_id)``, ``UNIQUE (snapshot_seq, pub_key, clock)``,
  ``PRIMARY KEY (snapshot_seq, version)`` and a foreign key from each update with a clock > 0 to
  the same author's previous clock (contiguous clocks). A document's writers take turns on its
  lock until they commit, so versions (and positions) follow commit order. The checks are the
  SQL functions ``save_update`` / ``save_snapshot`` of the schema (one round trip per run of
  writes of a kind, pipelined).
* **Reads** run on pooled connections; a ``document`` view is read in one ``REPEATABLE READ``
  read-only transaction (a consistent snapshot), the delta read selects only the updates after
  the reader's clocks in SQL.
* **Schema**: in its own PostgreSQL schema (``?schema=``, default ``secsync``), versioned by
  ``MIGRATIONS``; every relay process migrates at open under an advisory lock (a concurrent
  start waits), a newer schema is refused.

URL: ``postgresql://[user[:password]@][host][:port]/dbname[?options]`` as libpq/asyncpg read it
(``host=/run/postgresql`` for a unix socket), plus this store's options ``schema``,
``pool_size`` (connections per process, default 10), ``writers`` (lanes, default 2) and
``doorbell`` (``trigger``, the default, or ``writer``: who notifies the other relay processes of
a committed update, see :mod:`.fanout`).
docs/relay.md "PostgreSQL store" documents the choices.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the PostgreSQL store needs asyncpg: pip install 'secsync-jupyter[postgres]'"
    ) from exc

from ..protocol import SnapshotProofChainEntry
from . import trace
from .sqlite_store import superseded_to_prune
from .store import (
    LOCKBOX_EXISTS,
    LOG_ENTRY_CONFLICT,
    LOG_ENTRY_GAP,
    DocumentState,
    DocumentView,
    LockboxRow,
    LogRow,
    PruneResult,
    RelayStore,
    Retention,
    SaveResult,
    SnapshotInfo,
    StoreError,
    position,
    redact_url,
)

#: advisory lock namespaces (``pg_advisory_xact_lock(namespace, key)``): documents, migrations
LOCK_DOCUMENT = 0x5EC5
LOCK_MIGRATION = 0x5EC6

#: schema migrations, applied in order; ``schema_version.version`` = number applied
MIGRATIONS: tuple[str, ...] = (
    # 1: documents, snapshots (proof-chain metadata + message), updates; the write functions
    f"""
    CREATE TABLE documents (
        doc_id          text PRIMARY KEY,
        active_snapshot bigint,
        created_at      bigint NOT NULL,
        -- bytes of the messages on the active snapshot (UTF-8), for the per-document quota
        active_bytes    bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE snapshots (
        seq                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        doc_id                text NOT NULL REFERENCES documents (doc_id),
        snapshot_id           text NOT NULL,
        parent_snapshot_id    text NOT NULL,
        pub_key               text NOT NULL,
        ciphertext_hash       text NOT NULL,
        parent_snapshot_proof text NOT NULL,
        message               text NOT NULL,
        created_at            bigint NOT NULL,
        UNIQUE (doc_id, snapshot_id),
        UNIQUE (doc_id, seq)
    );
    -- the active snapshot is one of the document's own snapshots
    ALTER TABLE documents ADD CONSTRAINT documents_active_snapshot_fkey
        FOREIGN KEY (doc_id, active_snapshot) REFERENCES snapshots (doc_id, seq);
    CREATE TABLE updates (
        snapshot_seq bigint NOT NULL REFERENCES snapshots (seq),
        version      integer NOT NULL CHECK (version > 0),
        pub_key      text NOT NULL,
        clock        bigint NOT NULL CHECK (clock >= 0),
        prev_clock   bigint GENERATED ALWAYS AS (NULLIF(clock, 0) - 1) STORED,
        message      text NOT NULL,
        PRIMARY KEY (snapshot_seq, version),
        UNIQUE (snapshot_seq, pub_key, clock),
        -- contiguous clocks: clock n > 0 of an author needs its clock n - 1 on the snapshot
        CONSTRAINT updates_previous_clock_fkey FOREIGN KEY (snapshot_seq, pub_key, prev_clock)
            REFERENCES updates (snapshot_seq, pub_key, clock)
    );

    -- the advisory locks of every document of a write batch, in one order (no deadlocks)
    CREATE FUNCTION lock_documents(ids text[]) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        k integer;
    BEGIN
        FOR k IN SELECT DISTINCT hashtext(i) FROM unnest(ids) AS i ORDER BY 1 LOOP
            PERFORM pg_advisory_xact_lock({LOCK_DOCUMENT}, k);
        END LOOP;
    END $$;

    CREATE FUNCTION save_update(
        p_doc text, p_snapshot text, p_pub text, p_clock bigint, p_message text,
        OUT out_code text, OUT out_seq bigint, OUT out_version integer
    ) LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock({LOCK_DOCUMENT}, hashtext(p_doc));
        SELECT s.seq INTO out_seq FROM documents d JOIN snapshots s ON s.seq = d.active_snapshot
         WHERE d.doc_id = p_doc AND s.snapshot_id = p_snapshot;
        IF out_seq IS NULL THEN
            out_code := 'update-wrong-snapshot';
        ELSIF EXISTS (SELECT 1 FROM updates u WHERE u.snapshot_seq = out_seq
                      AND u.pub_key = p_pub AND u.clock = p_clock) THEN
            out_code := 'update-clock-replayed';
        ELSIF p_clock <> 0 AND NOT EXISTS (SELECT 1 FROM updates u WHERE u.snapshot_seq = out_seq
                                           AND u.pub_key = p_pub AND u.clock = p_clock - 1) THEN
            out_code := 'update-clock-gap';
        ELSE
            SELECT COALESCE(MAX(u.version), 0) + 1 INTO out_version
              FROM updates u WHERE u.snapshot_seq = out_seq;
            INSERT INTO updates (snapshot_seq, version, pub_key, clock, message)
                 VALUES (out_seq, out_version, p_pub, p_clock, p_message);
            UPDATE documents SET active_bytes = active_bytes + octet_length(p_message)
             WHERE doc_id = p_doc;
        END IF;
    END $$;

    CREATE FUNCTION save_snapshot(
        p_doc text, p_id text, p_parent text, p_clocks jsonb, p_pub text, p_hash text,
        p_proof text, p_message text,
        OUT out_code text, OUT out_seq bigint, OUT out_created boolean
    ) LANGUAGE plpgsql AS $$
    DECLARE
        v_active bigint;
    BEGIN
        PERFORM pg_advisory_xact_lock({LOCK_DOCUMENT}, hashtext(p_doc));
        SELECT d.active_snapshot INTO v_active FROM documents d WHERE d.doc_id = p_doc;
        out_created := NOT FOUND;
        IF v_active IS NOT NULL THEN
            IF (SELECT s.snapshot_id FROM snapshots s WHERE s.seq = v_active) <> p_parent THEN
                out_code := 'snapshot-parent-not-active';
            ELSIF (SELECT COALESCE(jsonb_object_agg(m.pub_key, m.clock), '{{}}'::jsonb)
                     FROM (SELECT u.pub_key, MAX(u.clock) AS clock FROM updates u
                            WHERE u.snapshot_seq = v_active GROUP BY u.pub_key) m) <> p_clocks THEN
                out_code := 'snapshot-clocks-differ';
            END IF;
        END IF;
        IF out_code IS NULL AND EXISTS (SELECT 1 FROM snapshots s
                                        WHERE s.doc_id = p_doc AND s.snapshot_id = p_id) THEN
            out_code := 'snapshot-id-exists';
        END IF;
        IF out_code IS NOT NULL THEN
            out_created := false;
            RETURN;
        END IF;
        IF out_created THEN
            INSERT INTO documents (doc_id, active_snapshot, created_at)
                 VALUES (p_doc, NULL, extract(epoch FROM now())::bigint);
        END IF;
        INSERT INTO snapshots (doc_id, snapshot_id, parent_snapshot_id, pub_key, ciphertext_hash,
                               parent_snapshot_proof, message, created_at)
             VALUES (p_doc, p_id, p_parent, p_pub, p_hash, p_proof, p_message,
                     extract(epoch FROM now())::bigint)
          RETURNING seq INTO out_seq;
        UPDATE documents SET active_snapshot = out_seq, active_bytes = octet_length(p_message)
         WHERE doc_id = p_doc;
    END $$;
    """,
    # 2: the membership log of documents that have one (issue 11): accepted entries, one chain
    # per document, enforced by constraints: a second entry on the same parent violates the
    # primary key, and every entry but the root references the stored entry before it by hash
    f"""
    CREATE TABLE log_entries (
        doc_id     text NOT NULL,
        seq        bigint NOT NULL CHECK (seq >= 0),
        hash       text NOT NULL,
        prev       text NOT NULL,
        prev_seq   bigint GENERATED ALWAYS AS (NULLIF(seq, 0) - 1) STORED,
        entry      text NOT NULL,
        created_at bigint NOT NULL,
        PRIMARY KEY (doc_id, seq),
        UNIQUE (doc_id, seq, hash),
        CONSTRAINT log_entries_prev_fkey FOREIGN KEY (doc_id, prev_seq, prev)
            REFERENCES log_entries (doc_id, seq, hash)
    );

    CREATE FUNCTION save_log_entry(
        p_doc text, p_seq bigint, p_prev text, p_hash text, p_entry text,
        OUT out_code text, OUT out_seq bigint, OUT out_unused boolean
    ) LANGUAGE plpgsql AS $$
    DECLARE
        v_prev text;
    BEGIN
        PERFORM pg_advisory_xact_lock({LOCK_DOCUMENT}, hashtext(p_doc));
        out_seq := p_seq;
        IF EXISTS (SELECT 1 FROM log_entries l WHERE l.doc_id = p_doc AND l.seq = p_seq) THEN
            out_code := 'log-entry-conflict';
            RETURN;
        END IF;
        IF p_seq > 0 THEN
            SELECT l.hash INTO v_prev FROM log_entries l
             WHERE l.doc_id = p_doc AND l.seq = p_seq - 1;
            IF NOT FOUND THEN
                out_code := 'log-entry-gap';
                RETURN;
            ELSIF v_prev <> p_prev THEN
                out_code := 'log-entry-conflict';
                RETURN;
            END IF;
        END IF;
        INSERT INTO log_entries (doc_id, seq, hash, prev, entry, created_at)
             VALUES (p_doc, p_seq, p_hash, p_prev, p_entry, extract(epoch FROM now())::bigint);
    END $$;
    """,
    # 3: key epochs (issue 12): each snapshot's epoch (0 before), the lockboxes (one per
    # document, epoch and recipient), stored with their log entry in one transaction
    f"""
    ALTER TABLE snapshots ADD COLUMN epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0);
    CREATE TABLE lockboxes (
        doc_id     text NOT NULL,
        epoch      bigint NOT NULL CHECK (epoch >= 0),
        recipient  text NOT NULL,
        lockbox    text NOT NULL,
        created_at bigint NOT NULL,
        PRIMARY KEY (doc_id, recipient, epoch)
    );

    DROP FUNCTION save_snapshot(text, text, text, jsonb, text, text, text, text);
    CREATE FUNCTION save_snapshot(
        p_doc text, p_id text, p_parent text, p_clocks jsonb, p_pub text, p_hash text,
        p_proof text, p_epoch bigint, p_message text,
        OUT out_code text, OUT out_seq bigint, OUT out_created boolean
    ) LANGUAGE plpgsql AS $$
    DECLARE
        v_active bigint;
    BEGIN
        PERFORM pg_advisory_xact_lock({LOCK_DOCUMENT}, hashtext(p_doc));
        SELECT d.active_snapshot INTO v_active FROM documents d WHERE d.doc_id = p_doc;
        out_created := NOT FOUND;
        IF v_active IS NOT NULL THEN
            IF (SELECT s.snapshot_id FROM snapshots s WHERE s.seq = v_active) <> p_parent THEN
                out_code := 'snapshot-parent-not-active';
            ELSIF (SELECT COALESCE(jsonb_object_agg(m.pub_key, m.clock), '{{}}'::jsonb)
                     FROM (SELECT u.pub_key, MAX(u.clock) AS clock FROM updates u
                            WHERE u.snapshot_seq = v_active GROUP BY u.pub_key) m) <> p_clocks THEN
                out_code := 'snapshot-clocks-differ';
            END IF;
        END IF;
        IF out_code IS NULL AND EXISTS (SELECT 1 FROM snapshots s
                                        WHERE s.doc_id = p_doc AND s.snapshot_id = p_id) THEN
            out_code := 'snapshot-id-exists';
        END IF;
        IF out_code IS NOT NULL THEN
            out_created := false;
            RETURN;
        END IF;
        IF out_created THEN
            INSERT INTO documents (doc_id, active_snapshot, created_at)
                 VALUES (p_doc, NULL, extract(epoch FROM now())::bigint);
        END IF;
        INSERT INTO snapshots (doc_id, snapshot_id, parent_snapshot_id, pub_key, ciphertext_hash,
                               parent_snapshot_proof, message, created_at, epoch)
             VALUES (p_doc, p_id, p_parent, p_pub, p_hash, p_proof, p_message,
                     extract(epoch FROM now())::bigint, p_epoch)
          RETURNING seq INTO out_seq;
        UPDATE documents SET active_snapshot = out_seq, active_bytes = octet_length(p_message)
         WHERE doc_id = p_doc;
    END $$;

    DROP FUNCTION save_log_entry(text, bigint, text, text, text);
    CREATE FUNCTION save_log_entry(
        p_doc text, p_seq bigint, p_prev text, p_hash text,
        p_epochs bigint[], p_recipients text[], p_boxes text[], p_entry text,
        OUT out_code text, OUT out_seq bigint, OUT out_unused boolean
    ) LANGUAGE plpgsql AS $$
    DECLARE
        v_prev text;
    BEGIN
        PERFORM pg_advisory_xact_lock({LOCK_DOCUMENT}, hashtext(p_doc));
        out_seq := p_seq;
        IF EXISTS (SELECT 1 FROM log_entries l WHERE l.doc_id = p_doc AND l.seq = p_seq) THEN
            out_code := 'log-entry-conflict';
            RETURN;
        END IF;
        IF p_seq > 0 THEN
            SELECT l.hash INTO v_prev FROM log_entries l
             WHERE l.doc_id = p_doc AND l.seq = p_seq - 1;
            IF NOT FOUND THEN
                out_code := 'log-entry-gap';
                RETURN;
            ELSIF v_prev <> p_prev THEN
                out_code := 'log-entry-conflict';
                RETURN;
            END IF;
        END IF;
        INSERT INTO log_entries (doc_id, seq, hash, prev, entry, created_at)
             VALUES (p_doc, p_seq, p_hash, p_prev, p_entry, extract(epoch FROM now())::bigint);
        INSERT INTO lockboxes (doc_id, epoch, recipient, lockbox, created_at)
             SELECT p_doc, b.epoch, b.recipient, b.lockbox, extract(epoch FROM now())::bigint
               FROM unnest(p_epochs, p_recipients, p_boxes) AS b(epoch, recipient, lockbox)
             ON CONFLICT DO NOTHING;
    END $$;

    CREATE FUNCTION save_lockbox(
        p_doc text, p_epoch bigint, p_recipient text, p_lockbox text,
        OUT out_code text, OUT out_seq bigint, OUT out_unused boolean
    ) LANGUAGE plpgsql AS $$
    DECLARE
        v_stored text;
    BEGIN
        PERFORM pg_advisory_xact_lock({LOCK_DOCUMENT}, hashtext(p_doc));
        SELECT l.lockbox INTO v_stored FROM lockboxes l
         WHERE l.doc_id = p_doc AND l.recipient = p_recipient AND l.epoch = p_epoch;
        IF FOUND THEN
            IF v_stored <> p_lockbox THEN
                out_code := 'lockbox-exists';
            END IF;
            RETURN;
        END IF;
        INSERT INTO lockboxes (doc_id, epoch, recipient, lockbox, created_at)
             VALUES (p_doc, p_epoch, p_recipient, p_lockbox, extract(epoch FROM now())::bigint);
    END $$;
    """,
    # 4: a batch of updates in one statement (sent outside a transaction block: one round trip,
    # its own transaction, committed before the answer), so no lock is held while the relay's
    # event loop is busy
    """
    CREATE FUNCTION save_updates(
        p_docs text[], p_snapshots text[], p_pubs text[], p_clocks bigint[], p_messages text[]
    ) RETURNS TABLE (out_code text, out_seq bigint, out_version integer)
    LANGUAGE plpgsql AS $$
    DECLARE
        i integer;
    BEGIN
        IF (SELECT count(DISTINCT d) FROM unnest(p_docs) AS d) > 1 THEN
            PERFORM lock_documents(p_docs);
        END IF;
        FOR i IN 1 .. coalesce(array_length(p_docs, 1), 0) LOOP
            SELECT s.out_code, s.out_seq, s.out_version INTO out_code, out_seq, out_version
              FROM save_update(p_docs[i], p_snapshots[i], p_pubs[i], p_clocks[i], p_messages[i]) s;
            RETURN NEXT;
        END LOOP;
    END $$;
    """,
    # 5: the flush barrier (synchronous=full/extra): writes commit with synchronous_commit = off,
    # then one small synchronous transaction per group of commits makes them durable before they
    # are acknowledged; it must write WAL (a transaction that writes none does not wait for a
    # flush), so it bumps this relay process's row (docs/relay.md "Durability on PostgreSQL")
    """
    CREATE TABLE flush_barrier (
        backend integer PRIMARY KEY,
        barriers bigint NOT NULL
    );
    """,
    # 6: save_updates decides a batch with a few statements per batch instead of about a dozen
    # per update (save_update's): the documents' locks once, every row's active snapshot in one
    # read, each author's last stored clock once per (snapshot, author) and each snapshot's last
    # version once per snapshot, the accepted rows in one INSERT (in the batch's order, so the
    # versions and the trigger's notifications follow it), the documents' stored bytes in one
    # UPDATE. Same answers as save_update in a loop: a clock is stored iff it is at most the
    # author's last stored clock (clocks are contiguous from 0: the previous-clock foreign key),
    # so "replayed" is clock <= last and "gap" is clock > last + 1; a refused write takes no
    # version. The constraints stay the backstop (a violation fails the whole statement).
    """
    CREATE OR REPLACE FUNCTION save_updates(
        p_docs text[], p_snapshots text[], p_pubs text[], p_clocks bigint[], p_messages text[]
    ) RETURNS TABLE (out_code text, out_seq bigint, out_version integer)
    LANGUAGE plpgsql AS $$
    DECLARE
        n integer := coalesce(array_length(p_docs, 1), 0);
        v_seq bigint[];
        v_code text[] := array_fill(NULL::text, ARRAY[n]);
        v_version integer[] := array_fill(NULL::integer, ARRAY[n]);
        r record;
        k_seq bigint := NULL;
        k_pub text := NULL;
        k_last bigint;
        k_version integer;
    BEGIN
        IF n = 0 THEN
            RETURN;
        END IF;
        PERFORM lock_documents(p_docs);
        -- every row's active snapshot (NULL: the document has none, or another one is active)
        -- (a subquery per row: two primary-key lookups, whatever the planner estimates for
        -- unnest; a join may scan every document)
        SELECT array_agg((SELECT s.seq FROM documents d
                            JOIN snapshots s ON s.seq = d.active_snapshot
                           WHERE d.doc_id = b.doc_id AND s.snapshot_id = b.snapshot_id)
                         ORDER BY b.i) INTO v_seq
          FROM unnest(p_docs, p_snapshots) WITH ORDINALITY AS b (doc_id, snapshot_id, i);
        -- the clocks, per (snapshot, author) in the batch's order
        FOR r IN SELECT b.i, b.pub_key, b.clock, v_seq[b.i] AS seq
                   FROM unnest(p_pubs, p_clocks) WITH ORDINALITY AS b (pub_key, clock, i)
                  ORDER BY v_seq[b.i], b.pub_key, b.i LOOP
            IF r.seq IS NULL THEN
                v_code[r.i] := 'update-wrong-snapshot';
                CONTINUE;
            END IF;
            IF k_seq IS DISTINCT FROM r.seq OR k_pub IS DISTINCT FROM r.pub_key THEN
                k_seq := r.seq;
                k_pub := r.pub_key;
                -- ORDER BY … LIMIT 1, not max(): a backward index scan whatever the
                -- statistics say (with few rows estimated, max() reads them all)
                k_last := coalesce((SELECT u.clock FROM updates u
                                     WHERE u.snapshot_seq = r.seq AND u.pub_key = r.pub_key
                                     ORDER BY u.clock DESC LIMIT 1), -1);
            END IF;
            IF r.clock <= k_last THEN
                v_code[r.i] := 'update-clock-replayed';
            ELSIF r.clock <> k_last + 1 THEN
                v_code[r.i] := 'update-clock-gap';
            ELSE
                k_last := r.clock;
            END IF;
        END LOOP;
        -- the versions of the accepted rows, per snapshot in the batch's order
        k_seq := NULL;
        FOR r IN SELECT b.i, v_seq[b.i] AS seq
                   FROM generate_subscripts(p_docs, 1) AS b (i)
                  WHERE v_seq[b.i] IS NOT NULL AND v_code[b.i] IS NULL
                  ORDER BY v_seq[b.i], b.i LOOP
            IF k_seq IS DISTINCT FROM r.seq THEN
                k_seq := r.seq;
                k_version := coalesce((SELECT u.version FROM updates u
                                        WHERE u.snapshot_seq = r.seq
                                        ORDER BY u.version DESC LIMIT 1), 0);
            END IF;
            k_version := k_version + 1;
            v_version[r.i] := k_version;
        END LOOP;
        INSERT INTO updates (snapshot_seq, version, pub_key, clock, message)
             SELECT v_seq[b.i], v_version[b.i], b.pub_key, b.clock, b.message
               FROM unnest(p_pubs, p_clocks, p_messages) WITH ORDINALITY
                    AS b (pub_key, clock, message, i)
              WHERE v_version[b.i] IS NOT NULL
              ORDER BY b.i;
        -- one UPDATE per document (by its primary key)
        FOR r IN SELECT b.doc_id, sum(octet_length(b.message)) AS bytes
                   FROM unnest(p_docs, p_messages) WITH ORDINALITY AS b (doc_id, message, i)
                  WHERE v_version[b.i] IS NOT NULL GROUP BY b.doc_id LOOP
            UPDATE documents SET active_bytes = active_bytes + r.bytes WHERE doc_id = r.doc_id;
        END LOOP;
        RETURN QUERY SELECT v_code[b.i], v_seq[b.i], v_version[b.i]
                       FROM generate_subscripts(p_docs, 1) AS b (i) ORDER BY b.i;
    END $$;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_LOCK = "SELECT lock_documents($1::text[])"
_SAVE_UPDATE = "SELECT * FROM save_update($1, $2, $3, $4, $5)"
_SAVE_SNAPSHOT = "SELECT * FROM save_snapshot($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9)"
_SAVE_LOG_ENTRY = "SELECT * FROM save_log_entry($1, $2, $3, $4, $5, $6, $7, $8)"
_SAVE_LOCKBOX = "SELECT * FROM save_lockbox($1, $2, $3, $4)"
_SAVE_UPDATES = "SELECT * FROM save_updates($1::text[], $2::text[], $3::text[], $4, $5::text[])"
#: how many of a ``save_updates`` batch's updates are stored (documents, snapshots, pubKeys, clocks)
_STORED_UPDATES = """
SELECT count(*) FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
    AS b (doc_id, snapshot_id, pub_key, clock)
JOIN snapshots s ON s.doc_id = b.doc_id AND s.snapshot_id = b.snapshot_id
JOIN updates u ON u.snapshot_seq = s.seq AND u.pub_key = b.pub_key AND u.clock = b.clock
"""
#: the flush barrier: a transaction that writes WAL, committed with the server's
#: ``synchronous_commit``, so its commit waits for the WAL up to its own commit record, which
#: follows the commit records of every write transaction that had committed before it began
_BARRIER = """
INSERT INTO flush_barrier AS b (backend, barriers) VALUES (pg_backend_pid(), $1)
ON CONFLICT (backend) DO UPDATE SET barriers = b.barriers + $1
"""
_SQL = {
    "update": _SAVE_UPDATE,
    "snapshot": _SAVE_SNAPSHOT,
    "log": _SAVE_LOG_ENTRY,
    "lockbox": _SAVE_LOCKBOX,
}

#: a document's active snapshot, stored bytes and last clock of each author, in one statement
_LOAD_STATE = """
SELECT d.active_snapshot, s.snapshot_id, s.ciphertext_hash, s.parent_snapshot_proof,
       d.active_bytes, c.pub_keys, c.clocks, s.epoch
FROM documents d
LEFT JOIN snapshots s ON s.seq = d.active_snapshot
LEFT JOIN LATERAL (
    SELECT array_agg(m.pub_key) AS pub_keys, array_agg(m.clock) AS clocks
    FROM (SELECT u.pub_key, max(u.clock) AS clock FROM updates u
          WHERE u.snapshot_seq = d.active_snapshot GROUP BY u.pub_key) m
) c ON true
WHERE d.doc_id = $1
"""

#: the updates of a snapshot after the reader's known clock of each author (none known: all)
_MISSING_UPDATES = """
SELECT u.message FROM updates u
LEFT JOIN unnest($2::text[], $3::bigint[]) AS k(pub_key, clock) ON k.pub_key = u.pub_key
WHERE u.snapshot_seq = $1 AND u.clock > COALESCE(k.clock, -1)
ORDER BY u.version
"""

#: the answers of a refused write (the same texts as the other stores)
_REFUSALS = {
    "update-wrong-snapshot": "refSnapshotId is not the active snapshot",
    "update-clock-replayed": "clock {clock} of this pubKey is already stored",
    "update-clock-gap": "clock {clock} does not follow this pubKey's last clock",
    "snapshot-parent-not-active": "parentSnapshotId is not active",
    "snapshot-clocks-differ": "parentSnapshotUpdateClocks differ from the relay's",
    "snapshot-id-exists": "a snapshot with this snapshotId already exists",
    LOG_ENTRY_CONFLICT: "the log already has entry {seq} or another entry before it",
    LOG_ENTRY_GAP: "entry {prev} is missing",
    LOCKBOX_EXISTS: "another lockbox for this epoch and recipient is stored",
}

#: write transactions slower than this (seconds) are logged as warnings
SLOW_COMMIT = 0.1
#: a statement that takes longer (seconds: a database that hangs) fails: its writes are answered
#: storage-failed instead of waiting for ever
COMMAND_TIMEOUT = 120.0
SCHEMA_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: this store's URL options (the others go to asyncpg)
OPTIONS = ("schema", "pool_size", "writers", "doorbell")
#: who rings for a committed update (docs/relay.md "Fan-out across relay processes")
DOORBELLS = ("trigger", "writer")
SYNCHRONOUS_MODES = ("full", "normal", "extra")

#: errors after which a write transaction that did not reach COMMIT is retried once on another
#: connection (the database dropped the connection, or asks to try again)
_RETRYABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.InterfaceError,
    # a connection that received the server's termination notice while idle in the pool
    asyncpg.exceptions.InternalClientError,
)
#: errors of a statement sent outside a transaction block that mean it did not commit: the server
#: rolled it back (a deadlock, a serialization failure, an administrator's shutdown or cancel), or
#: it was never sent (the connection was already closed, or not usable)
_NOT_COMMITTED = (
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)
_DB_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


#: the FATAL errors ("terminating connection …") of a backend that ends its session and aborts
#: what it ran: an administrator's (pg_terminate_backend), a shutdown's or the postmaster's end
#: (57P01), another process's crash (57P02)
_SESSION_ENDED = (asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.CrashShutdownError)


def _server_ended(exc: BaseException) -> bool:
    """The connection was lost while the server had a statement, and the server said it ended
    the session (asyncpg raises ``ConnectionDoesNotExistError`` whose cause is the server's
    FATAL, one of ``_SESSION_ENDED``): the statement's transaction is over, so a read on a new
    connection tells whether it committed. A plain network error says nothing of the kind
    (the backend may still be running it)."""
    return isinstance(exc, asyncpg.exceptions.PostgresConnectionError) and isinstance(
        exc.__cause__, _SESSION_ENDED
    )


class _Op:
    __slots__ = ("args", "doc_id", "future", "kind", "on_committed")

    def __init__(
        self, kind: str, doc_id: str, args: tuple, future: asyncio.Future, on_committed=None
    ):
        self.kind = kind
        self.doc_id = doc_id
        self.args = args
        self.future = future
        #: early_commit: called with the result right after the COMMIT (before the barrier)
        self.on_committed = on_committed


class _Lane:
    """A queue of writes committed in order by one task."""

    def __init__(self) -> None:
        self.ops: deque[_Op] = deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None


def _fail(code: str, message: str) -> SaveResult:
    return SaveResult(False, code=code, message=message)


class PostgresStore(RelayStore):
    """See the module docs. ``synchronous``: ``"full"``/``"extra"`` (the default): writes
    commit with ``synchronous_commit = off`` (visible to readers and the other relay processes
    at once, ``on_committed`` called: :attr:`early_commit`), then a *flush barrier*, one small
    transaction committed with the server's ``synchronous_commit`` (``on`` unless the database
    says otherwise) on a connection of its own, waits for the WAL flush past their commit
    records; only then are they acknowledged (an acknowledged write survives a power loss).
    One barrier serves every batch committed before it began. ``"normal"`` sets
    ``synchronous_commit = off`` for the relay's connections and has no barrier (a commit
    returns before its WAL flush: an acknowledged write survives a crash of the relay, but a
    crash of the database server or the machine may lose the last ~0.6 s of commits)."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "secsync",
        pool_size: int = 10,
        writers: int = 2,
        synchronous: str = "full",
        max_batch: int = 512,
        max_batch_chars: int = 16 * 1024 * 1024,
        command_timeout: float = COMMAND_TIMEOUT,
        doorbell: str = "trigger",
        log: logging.Logger | None = None,
    ):
        if not SCHEMA_NAME_RE.fullmatch(schema):
            raise ValueError(f"schema must match {SCHEMA_NAME_RE.pattern}, not {schema!r}")
        if synchronous.lower() not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        if doorbell not in DOORBELLS:
            raise ValueError(f"doorbell must be one of {', '.join(DOORBELLS)}, not {doorbell!r}")
        if writers < 1 or pool_size <= writers:
            raise ValueError("need writers >= 1 and pool_size > writers (reads need a connection)")
        self.dsn = dsn
        self.schema = schema
        self.pool_size = pool_size
        self.synchronous = synchronous.lower()
        self.max_batch = max_batch
        self.max_batch_chars = max_batch_chars
        self.command_timeout = command_timeout
        self.log = log or logging.getLogger("secsync_jupyter.relay.store")
        self._settings = {"search_path": schema, "application_name": "secsync-relay"}
        if self.synchronous == "normal":
            self._settings["synchronous_commit"] = "off"
        #: full/extra: writes commit asynchronously and are broadcast then (``on_committed``),
        #: acknowledged after the flush barrier (:meth:`flush_barrier`)
        self.early_commit = self.synchronous != "normal"
        #: the pool's connections (writes, reads): without a WAL flush in their commits
        self._pool_settings = {**self._settings, "synchronous_commit": "off"}
        #: committed batches waiting for the flush barrier, in commit order: (ops, results)
        self._undurable: list[tuple[list[_Op], list[SaveResult], Any]] = []
        self._barrier_wake: asyncio.Event | None = None
        self._barrier_lock: asyncio.Lock | None = None
        self._barrier_task: asyncio.Task | None = None
        self._barrier_conn: Any = None
        self._lanes_done = False
        #: flush barriers committed so far, and the ones that failed (tests and benchmarks)
        self.barriers = 0
        self.barriers_failed = 0
        self._lanes = [_Lane() for _ in range(writers)]
        self._pool: asyncpg.Pool | None = None
        self._open = False
        self._closing = False
        #: committed write transactions so far (tests and benchmarks)
        self.commits = 0
        #: ``"writer"``: this process's updates do not notify from the trigger (their
        #: transactions then need not take PostgreSQL's notification lock through their WAL
        #: flush); the lane rings for them after the commit (:attr:`ring`)
        self.doorbell = doorbell
        #: set by the fan-out: ``(channel, payload(op args, result))`` of the writer's doorbell
        self.ring: tuple[str, Any] | None = None
        self.doorbells_sent = 0
        self.doorbells_lost = 0
        self._ring_warned = 0.0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStore:
        """``postgresql://…`` or ``postgres://…`` (see the module docs for the options)."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"a PostgreSQL store URL is postgresql://…, not {redact_url(url)!r}")
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in query if k in OPTIONS}
        rest = [(k, v) for k, v in query if k not in OPTIONS]
        kw: dict[str, Any] = {}
        if "schema" in ours:
            kw["schema"] = ours["schema"]
        if "doorbell" in ours:
            kw["doorbell"] = ours["doorbell"]
        for name in ("pool_size", "writers"):
            if name in ours:
                try:
                    kw[name] = int(ours[name])
                except ValueError:
                    raise ValueError(f"{name} must be an integer, not {ours[name]!r}") from None
        dsn = urlunsplit(parts._replace(query=urlencode(rest)))
        return cls(
            dsn,
            synchronous=options.get("synchronous", "full"),
            log=options.get("log"),
            **kw,
        )

    @property
    def name(self) -> str:
        return redact_url(self.dsn)

    # ------------------------------------------------------------------ lifecycle
    def open_sync(self) -> None:
        """Connect and create / migrate the schema once, before the event loop runs (in a
        thread with its own loop), so that an unusable database stops the start-up with a
        clear :class:`StoreError`; :meth:`open` makes the pool."""
        error: list[BaseException] = []

        def check() -> None:
            try:
                asyncio.run(self._migrate())
            except BaseException as exc:
                error.append(exc)

        t = threading.Thread(target=check, name="secsync-relay-pg-open")
        t.start()
        t.join()
        if error:
            raise error[0]

    async def open(self) -> None:
        if self._open:
            return
        await self._migrate()
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=min(2, self.pool_size),
                max_size=self.pool_size,
                server_settings=self._pool_settings,
                reset=_no_reset,
                init=_writer_notifies if self.doorbell == "writer" else None,
                command_timeout=self.command_timeout,
            )
        except _DB_ERRORS as exc:
            raise StoreError(f"cannot open database {self.name}: {exc}") from exc
        for lane in self._lanes:
            lane.task = asyncio.get_running_loop().create_task(self._lane_main(lane))
        if self.early_commit:
            self._barrier_wake = asyncio.Event()
            self._barrier_lock = asyncio.Lock()
            await self._barrier_connection()  # before the first commit (see _barrier_main)
            self._barrier_task = asyncio.get_running_loop().create_task(self._barrier_main())
        self._open = True

    async def _migrate(self) -> None:
        """Create the schema or bring it to :data:`SCHEMA_VERSION`, each migration in its own
        transaction under the migration lock (relay processes starting together take turns)."""
        try:
            conn = await asyncpg.connect(self.dsn, server_settings=self._settings)
        except _DB_ERRORS as exc:
            raise StoreError(f"cannot open database {self.name}: {exc}") from exc
        try:
            encoding = await conn.fetchval("SHOW server_encoding")
            if encoding.upper() not in ("UTF8", "UTF-8"):
                raise StoreError(
                    f"database {self.name} has encoding {encoding}; the relay needs UTF8 "
                    "(CREATE DATABASE … ENCODING 'UTF8')"
                )
            while True:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", LOCK_MIGRATION)
                    await conn.execute(
                        f"CREATE SCHEMA IF NOT EXISTS {self.schema}; CREATE TABLE IF NOT EXISTS "
                        f"{self.schema}.schema_version (version integer NOT NULL)"
                    )
                    current = await conn.fetchval("SELECT max(version) FROM schema_version")
                    current = current or 0
                    if current > SCHEMA_VERSION:
                        raise StoreError(
                            f"database {self.name} (schema {self.schema}) has schema version "
                            f"{current}, newer than this relay ({SCHEMA_VERSION}); upgrade "
                            "secsync-jupyter"
                        )
                    if current == SCHEMA_VERSION:
                        return
                    await conn.execute(MIGRATIONS[current])
                    await conn.execute("DELETE FROM schema_version")
                    await conn.execute(
                        "INSERT INTO schema_version (version) VALUES ($1)", current + 1
                    )
                self.log.info(
                    "migrated %s (schema %s) to schema version %d",
                    self.name,
                    self.schema,
                    current + 1,
                )
        except StoreError:
            raise
        except _DB_ERRORS as exc:
            raise StoreError(f"cannot open database {self.name}: {exc}") from exc
        finally:
            await conn.close()

    async def close(self) -> None:
        if not self._open or self._closing:
            return
        self._closing = True
        for lane in self._lanes:
            lane.wake.set()
        # every write already submitted is committed (or refused) and answered
        await asyncio.gather(*(lane.task for lane in self._lanes if lane.task is not None))
        if self._barrier_task is not None:  # ... and made durable (or failed) and answered
            self._lanes_done = True
            assert self._barrier_wake is not None
            self._barrier_wake.set()
            await self._barrier_task
        assert self._pool is not None
        try:
            await asyncio.wait_for(self._pool.close(), 10)
        except asyncio.TimeoutError:
            self._pool.terminate()
        self._open = False

    # ------------------------------------------------------------------ writes
    def _submit(self, kind: str, doc_id: str, args: tuple, on_committed=None) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        if not self._open or self._closing:
            fut.set_exception(StoreError("the store is closed"))
            return fut
        lane = self._lanes[zlib.crc32(doc_id.encode()) % len(self._lanes)]
        if trace.ON and kind == "update":
            trace.ev("submit", doc_id, args[2][:8], args[3])
        lane.ops.append(_Op(kind, doc_id, args, fut, on_committed))
        lane.wake.set()
        return fut

    def save_update(self, doc_id, *, snapshot_id, pub_key, clock, message, on_committed=None):
        """``on_committed(result)`` (``early_commit`` only): called on the loop right after
        the COMMIT, before the future resolves (after the flush barrier)."""
        args = (doc_id, snapshot_id, pub_key, clock, message)
        return self._submit("update", doc_id, args, on_committed)

    def save_snapshot(self, doc_id, *, on_committed=None, **fields):
        """The fields of :meth:`RelayStore.save_snapshot`; ``on_committed`` as for
        :meth:`save_update`."""
        clocks = json.dumps(dict(fields["parent_clocks"]))
        args = (doc_id, fields["snapshot_id"], fields["parent_snapshot_id"], clocks)
        args += tuple(fields[k] for k in ("pub_key", "ciphertext_hash", "parent_snapshot_proof"))
        args += (int(fields.get("epoch", 0)), fields["message"])
        return self._submit("snapshot", doc_id, args, on_committed)

    def save_log_entry(self, doc_id, *, seq, prev, hash, entry, lockboxes=()):
        boxes = (
            [lb.epoch for lb in lockboxes],
            [lb.recipient for lb in lockboxes],
            [lb.lockbox for lb in lockboxes],
        )
        return self._submit("log", doc_id, (doc_id, seq, prev, hash, *boxes, entry))

    def save_lockbox(self, doc_id, *, epoch, recipient, lockbox):
        return self._submit("lockbox", doc_id, (doc_id, epoch, recipient, lockbox))

    async def read_lockboxes(self, doc_id: str, recipient: str) -> list[LockboxRow]:
        return await self._read(_read_lockboxes, doc_id, recipient)

    async def prune_superseded(self, doc_id: str, retention: Retention) -> PruneResult:
        return await self._read(_prune_superseded, doc_id, retention)

    async def documents_with_epochs(self) -> list[str]:
        return await self._read(_documents_with_epochs)

    async def read_log(self, doc_id: str, after_seq: int = -1) -> list[LogRow]:
        return await self._read(_read_log, doc_id, after_seq)

    async def _lane_main(self, lane: _Lane) -> None:
        while True:
            if not lane.ops:
                if self._closing:
                    return
                lane.wake.clear()
                await lane.wake.wait()
                continue
            batch = [lane.ops.popleft()]
            size = len(batch[0].args[-1])  # the message is the last argument of both kinds
            while lane.ops and len(batch) < self.max_batch and size < self.max_batch_chars:
                batch.append(lane.ops.popleft())
                size += len(batch[-1].args[-1])
            barrier = None
            try:
                if self.early_commit:  # opened before the commit (see _barrier_main)
                    barrier = await self._barrier_connection()
                results = await self._write(batch)
            except Exception as exc:  # a bug: answer, and keep the lane alive for what follows
                self.log.exception("write lane failed")
                results = [_fail("storage-failed", f"internal error: {exc}")] * len(batch)
            if self.early_commit and _committed(results):
                self._after_commit(batch, results, barrier)
                continue
            for op, result in zip(batch, results, strict=True):
                if not op.future.done():
                    op.future.set_result(result)

    def _after_commit(self, batch: list[_Op], results: list[SaveResult], barrier) -> None:
        """``early_commit``: a batch has committed (asynchronously): its ``on_committed``
        callbacks now (this lane commits a document's writes in order, so they run in commit
        order), its answers after the next flush barrier. ``barrier``: the barrier's
        connection as it was before the commit was sent (None: there was none)."""
        for op, result in zip(batch, results, strict=True):
            if op.on_committed is not None:
                try:
                    op.on_committed(result)
                except Exception:  # one write's callback must not keep the others from running
                    self.log.exception("on_committed failed")
        self._undurable.append((batch, results, barrier))
        assert self._barrier_wake is not None
        self._barrier_wake.set()

    async def _barrier_main(self) -> None:
        """Make committed batches durable, then answer them in commit order: one flush
        barrier for every batch waiting (the ones committed while a barrier runs wait for the
        next). A failed barrier (the database restarted or the connection was lost: the
        asynchronous commits may be gone) answers every write it should have covered
        ``storage-failed`` with ``durable_failed`` (never acknowledged; the relay closes the
        documents' connections so that their clients reload what the store has).

        A barrier covers a batch only when it runs on the connection that was already open
        before the batch's commit was sent: a crash of the database server ends every
        connection, so that connection still answering proves no restart in between (a barrier
        on a new connection could succeed on a server that recovered without the commits).
        A batch committed without such a connection is answered like a failed barrier."""
        assert self._barrier_wake is not None
        while True:
            if not self._undurable:
                if self._lanes_done:
                    break
                self._barrier_wake.clear()
                await self._barrier_wake.wait()
                continue
            waiting, self._undurable = self._undurable, []
            error: Exception | None = None
            t0 = time.monotonic()
            conn = await self._barrier_connection()
            try:
                if conn is None:
                    raise StoreError("no connection to the database")
                await self.flush_barrier(conn)
                self.barriers += 1
            except Exception as exc:
                error = exc
                self.barriers_failed += 1
                if conn is not None:
                    conn.terminate()
                if self._barrier_conn is conn:
                    self._barrier_conn = None
                writes = sum(len(batch) for batch, _results, _conn in waiting)
                self.log.error(
                    "flush barrier failed (%d committed writes not acknowledged): %s", writes, exc
                )
            if time.monotonic() - t0 > SLOW_COMMIT:
                self.log.warning("slow flush barrier: %.0f ms", (time.monotonic() - t0) * 1000)
            for batch, results, before in waiting:
                if error is not None or before is not conn:
                    reason = error or "the database connection was lost after the commit"
                    failed = SaveResult(
                        False,
                        code="storage-failed",
                        message=f"the relay could not store the message durably ({reason})",
                        durable_failed=True,
                    )
                    results = [failed] * len(batch)
                for op, result in zip(batch, results, strict=True):
                    if not op.future.done():
                        op.future.set_result(result)
        if self._barrier_conn is not None:
            self._barrier_conn.terminate()
            self._barrier_conn = None

    async def flush_barrier(self, conn) -> None:
        """Wait until every transaction committed so far is flushed to the WAL on disk (as
        the server's ``synchronous_commit`` says: with synchronous replication, on the standby
        too): commit one transaction that writes WAL, synchronously, on the barrier's
        connection ``conn``. Raises when it cannot (tests replace this method to hold or
        break it)."""
        # with an argument: a prepared statement, planned once per connection (without one
        # asyncpg sends a simple query, parsed and planned at every barrier)
        await conn.execute(_BARRIER, 1)

    async def _barrier_connection(self):
        """The barrier's own connection (with the server's ``synchronous_commit``), opened
        when there is none or it was closed; None when the database cannot be reached."""
        conn = self._barrier_conn
        if conn is not None and not conn.is_closed():
            return conn
        assert self._barrier_lock is not None
        async with self._barrier_lock:
            conn = self._barrier_conn
            if conn is not None and not conn.is_closed():
                return conn
            self._barrier_conn = None
            try:
                conn = await asyncpg.connect(
                    self.dsn,
                    server_settings={**self._settings, "application_name": "secsync-relay-flush"},
                    timeout=min(self.command_timeout, 10.0),
                    command_timeout=self.command_timeout,
                )
            except _DB_ERRORS as exc:
                self.log.warning("no connection for the flush barrier: %s", exc)
                return None
            self._barrier_conn = conn
            return conn

    async def _write(self, batch: list[_Op]) -> list[SaveResult]:
        """Run ``batch`` in one transaction; the results once it has committed (every write
        ``storage-failed`` when it did not). A transaction that failed before its COMMIT was
        sent, because the connection was lost or the server asked to retry, runs once more on a
        new connection."""
        assert self._pool is not None
        if all(op.kind == "update" for op in batch):
            return await self._write_updates(batch)
        for attempt in (1, 2):
            committing = False
            ta = time.monotonic()
            try:
                async with self._pool.acquire() as conn:
                    t0 = time.monotonic()
                    tr = conn.transaction()
                    await tr.start()
                    try:
                        rows = await _statements(conn, batch)
                    except BaseException:
                        try:
                            await tr.rollback()
                        except Exception:
                            pass  # the connection is gone: the pool replaces it
                        raise
                    t1 = time.monotonic()
                    committing = True
                    await tr.commit()
                    t2 = time.monotonic()
                    results = [_result(op, row) for op, row in zip(batch, rows, strict=True)]
                    if self.ring is not None and self.doorbell == "writer":
                        await self._ring(conn, batch, results)
            except Exception as exc:
                if attempt == 1 and not committing and isinstance(exc, _RETRYABLE):
                    self.log.warning(
                        "write transaction interrupted before commit (%s); retrying", exc
                    )
                    await self._pool.expire_connections()
                    continue
                self.log.error(
                    "write transaction failed (%d writes not acknowledged): %s", len(batch), exc
                )
                failed = _fail("storage-failed", f"the relay could not store the message: {exc}")
                return [failed] * len(batch)
            if t2 - t0 > SLOW_COMMIT:
                self.log.warning(
                    "slow write transaction: %d writes, %.0f ms statements, %.0f ms commit",
                    len(batch),
                    (t1 - t0) * 1000,
                    (t2 - t1) * 1000,
                )
            self.commits += 1
            if trace.ON:
                for op in batch:
                    if op.kind == "update":
                        a = op.args
                        trace.ev("commit", a[0], a[2][:8], a[3], len(batch), ta, t0, t1, t2)
            return results
        raise AssertionError("unreachable")

    async def _write_updates(self, batch: list[_Op]) -> list[SaveResult]:
        """A batch of updates only (the usual one): one statement, ``save_updates``, sent
        outside a transaction block, so the server runs it as its own transaction and commits
        it before it answers; one round trip, and the document locks are held only while the
        server works (never while this process's event loop is busy with something else).
        Retried once on a new connection when the statement cannot have committed (refused
        before it was sent, or rolled back by the server); when the connection was lost while
        the server had it, nobody knows: ``storage-failed``, as for a lost ``COMMIT``."""
        assert self._pool is not None
        args = ([], [], [], [], [])
        for op in batch:
            for column, value in zip(args, op.args, strict=True):
                column.append(value)
        for attempt in (1, 2):
            sent = False
            ta = time.monotonic()
            try:
                async with self._pool.acquire() as conn:
                    t0 = time.monotonic()
                    sent = not conn.is_closed()
                    rows = await conn.fetch(_SAVE_UPDATES, *args)
                    t1 = time.monotonic()
                    results = [_result(op, row) for op, row in zip(batch, rows, strict=True)]
                    if self.ring is not None and self.doorbell == "writer":
                        await self._ring(conn, batch, results)
            except Exception as exc:
                if attempt == 1 and (
                    not sent
                    or isinstance(exc, _NOT_COMMITTED)
                    or (_server_ended(exc) and await self._none_stored(args))
                ):
                    self.log.warning("write statement not run (%s); retrying", exc)
                    await self._pool.expire_connections()
                    continue
                self.log.error(
                    "write statement failed (%d writes not acknowledged): %s", len(batch), exc
                )
                failed = _fail("storage-failed", f"the relay could not store the message: {exc}")
                return [failed] * len(batch)
            if t1 - t0 > SLOW_COMMIT:
                self.log.warning(
                    "slow write transaction: %d writes, %.0f ms statement and commit",
                    len(batch),
                    (t1 - t0) * 1000,
                )
            self.commits += 1
            if trace.ON:
                for op in batch:
                    a = op.args
                    trace.ev("commit", a[0], a[2][:8], a[3], len(batch), ta, t0, t0, t1)
            return results
        raise AssertionError("unreachable")

    async def _none_stored(self, args: tuple) -> bool:
        """After the connection was lost while the server had a ``save_updates`` statement:
        true when, read on a new connection, none of the batch's updates is stored — the
        statement did not commit (it is one transaction, which the backend ended before it
        closed the connection — :func:`_server_ended` —, and a committed row is visible at once,
        with early commit too), so it can run again. False when any is, or the check fails: the
        outcome stays unknown (storage-failed, as for a lost ``COMMIT``)."""
        assert self._pool is not None
        try:
            await self._pool.expire_connections()
            async with self._pool.acquire() as conn:
                stored = await conn.fetchval(_STORED_UPDATES, *args[:4])
        except Exception as exc:  # the database is still away: unknown
            self.log.warning("could not check whether a lost write was stored: %s", exc)
            return False
        return stored == 0

    async def _ring(self, conn, batch: list[_Op], results: list[SaveResult]) -> None:
        """The writer's doorbell: answer the batch's writes first (without early commit:
        acknowledgements and this process's broadcasts need not wait), then, on the same
        connection, one statement notifying every update of the batch that committed, in
        order, in a transaction with ``synchronous_commit = off`` (a notification is no data:
        the rows are committed, and flushed per the store's mode, already; so PostgreSQL's
        notification lock is held for microseconds, not through a WAL flush). A doorbell that
        cannot be sent is lost: the fan-out's sweep finds the rows (docs/relay.md "Fan-out
        across relay processes")."""
        assert self.ring is not None
        channel, payload = self.ring
        payloads = []
        for op, result in zip(batch, results, strict=True):
            # with early commit the lane answers after the flush barrier (_after_commit): an
            # answer here would acknowledge a write that is not durable yet
            if not self.early_commit and not op.future.done():
                op.future.set_result(result)
            if op.kind == "update" and result.ok:
                payloads.append(payload(op.args, result))
        if not payloads:
            return
        try:
            await conn.execute(_RING, channel, payloads)
        except Exception as exc:
            self.doorbells_lost += len(payloads)
            now = time.monotonic()
            if now - self._ring_warned >= 10:
                self._ring_warned = now
                self.log.warning(
                    "%d doorbells not sent (%s): the fan-out's sweep finds their rows",
                    len(payloads),
                    exc,
                )
            return
        self.doorbells_sent += len(payloads)
        if trace.ON:
            trace.ev("ring", batch[0].doc_id, len(payloads))

    # ------------------------------------------------------------------ reads
    async def count_documents(self) -> int:
        return await self._read(_count_documents)

    async def load_state(self, doc_id: str) -> DocumentState:
        return await self._read(_load_state, doc_id)

    async def read_document(self, doc_id, known_snapshot_id, known_clocks) -> DocumentView:
        return await self._read(_read_document, doc_id, known_snapshot_id or None, known_clocks)

    async def _read(self, fn, *args):
        """``fn(conn, *args)`` on a pooled connection; once more on a new connection when the
        connection was lost (a read changes nothing)."""
        if not self._open or self._closing or self._pool is None:
            raise StoreError("the store is closed")
        for attempt in (1, 2):
            try:
                async with self._pool.acquire() as conn:
                    return await fn(conn, *args)
            except _DB_ERRORS + _RETRYABLE as exc:
                if attempt == 1 and isinstance(exc, _RETRYABLE):
                    await self._pool.expire_connections()
                    continue
                raise StoreError(f"read failed: {exc}") from exc
        raise AssertionError("unreachable")


#: the writer's doorbell: the notifications of a batch, in order, not waiting for a WAL flush
_RING = """
SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, t.p)
  FROM unnest($2::text[]) WITH ORDINALITY AS t(p, i) ORDER BY t.i
"""


async def _writer_notifies(conn) -> None:
    """A pooled connection of a process that rings for its own updates: the fan-out trigger
    leaves them to it (``secsync.writer_notifies``)."""
    await conn.execute("SET secsync.writer_notifies = on")


async def _no_reset(conn) -> None:
    """The pool's reset between uses: nothing (the store leaves no session state behind: its
    locks end with their transactions), which saves a round trip per use."""


async def _statements(conn, batch: list[_Op]) -> list[Any]:
    """The writes of ``batch`` in order (each a row of its function), after locking every
    document of the batch in one order (a batch of one document needs no such round trip: its
    first write takes the lock)."""
    documents = {op.doc_id for op in batch}
    if len(documents) > 1:
        await conn.execute(_LOCK, sorted(documents))
    rows: list[Any] = []
    for kind, group in itertools.groupby(batch, key=lambda op: op.kind):
        sql = _SQL[kind]
        args = [op.args for op in group]
        if len(args) == 1:
            rows.append(await conn.fetchrow(sql, *args[0]))
        else:
            rows.extend(await conn.fetchmany(sql, args))
    return rows


def _committed(results: list[SaveResult]) -> bool:
    """Whether a batch's transaction committed: a failed one answers every write
    ``storage-failed``, a code the database's write functions never return."""
    return not any(r.code == "storage-failed" for r in results)


def _result(op: _Op, row) -> SaveResult:
    code, seq, third = row
    if code is not None:
        clock = op.args[3] if op.kind == "update" else None
        return _fail(code, _REFUSALS[code].format(clock=clock, seq=seq, prev=(seq or 0) - 1))
    if op.kind in ("log", "lockbox"):
        return SaveResult(True)
    if op.kind == "update":
        return SaveResult(True, position(seq, third))
    return SaveResult(True, position(seq, 0), created_document=bool(third))


async def _read_log(conn, doc_id: str, after_seq: int) -> list[LogRow]:
    rows = await conn.fetch(
        "SELECT seq, hash, entry FROM log_entries WHERE doc_id = $1 AND seq > $2 ORDER BY seq",
        doc_id,
        after_seq,
    )
    return [LogRow(*r) for r in rows]


async def _read_lockboxes(conn, doc_id: str, recipient: str) -> list[LockboxRow]:
    rows = await conn.fetch(
        "SELECT epoch, recipient, lockbox FROM lockboxes WHERE doc_id = $1 AND recipient = $2 "
        "ORDER BY epoch",
        doc_id,
        recipient,
    )
    return [LockboxRow(*r) for r in rows]


async def _documents_with_epochs(conn) -> list[str]:
    rows = await conn.fetch(
        "SELECT d.doc_id FROM documents d JOIN snapshots s ON s.seq = d.active_snapshot "
        "WHERE s.epoch > 0"
    )
    return [r[0] for r in rows]


async def _prune_superseded(conn, doc_id: str, retention: Retention) -> PruneResult:
    """Under the document's lock: the superseded snapshots ``retention`` does not keep, and
    their updates (PostgreSQL reuses the space after its (auto)vacuum)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", LOCK_DOCUMENT, doc_id)
        row = await conn.fetchrow(
            "SELECT s.seq, s.epoch FROM documents d JOIN snapshots s ON s.seq = d.active_snapshot"
            " WHERE d.doc_id = $1",
            doc_id,
        )
        if row is None or row[1] == 0:
            return PruneResult()
        rows = await conn.fetch(
            "SELECT seq, created_at FROM snapshots WHERE doc_id = $1 AND epoch < $2 "
            "AND seq <> $3 ORDER BY seq DESC",
            doc_id,
            row[1],
            row[0],
        )
        seqs = superseded_to_prune([tuple(r) for r in rows], retention, time.time())
        if not seqs:
            return PruneResult()
        status = await conn.execute("DELETE FROM updates WHERE snapshot_seq = ANY($1)", seqs)
        await conn.execute("DELETE FROM snapshots WHERE seq = ANY($1)", seqs)
        return PruneResult(len(seqs), int(status.split()[-1]))


async def _count_documents(conn) -> int:
    return await conn.fetchval("SELECT count(*) FROM documents")


async def _load_state(conn, doc_id: str) -> DocumentState:
    row = await conn.fetchrow(_LOAD_STATE, doc_id)
    if row is None:
        return DocumentState(exists=False)
    if row[0] is None:
        return DocumentState(exists=True)
    clocks = dict(zip(row[5], row[6], strict=True)) if row[5] else {}
    return DocumentState(True, SnapshotInfo(row[1], row[2], row[3], row[7]), clocks, row[4])


async def _read_document(
    conn, doc_id: str, known_id: str | None, known_clocks: Mapping[str, int] | None
) -> DocumentView:
    """A consistent view: every statement in one REPEATABLE READ read-only transaction."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await _read_view(conn, doc_id, known_id, known_clocks)


async def _read_view(
    conn, doc_id: str, known_id: str | None, known_clocks: Mapping[str, int] | None
) -> DocumentView:
    row = await conn.fetchrow(
        "SELECT s.seq, s.snapshot_id, s.message FROM documents d "
        "JOIN snapshots s ON s.seq = d.active_snapshot WHERE d.doc_id = $1",
        doc_id,
    )
    if row is None:
        return DocumentView(None, (), (), 0, False, False)
    seq, active_id, snapshot_message = row
    if known_id is not None and known_id == active_id:
        # only what the reader misses is read
        known = dict(known_clocks or {})
        rows = await conn.fetch(_MISSING_UPDATES, seq, list(known), list(known.values()))
        last = await conn.fetchval(
            "SELECT COALESCE((SELECT version FROM updates WHERE snapshot_seq = $1 "
            "ORDER BY version DESC LIMIT 1), 0)",
            seq,
        )
        updates = tuple(r[0] for r in rows)
        return DocumentView(snapshot_message, updates, (), position(seq, last), True, True)
    rows = await conn.fetch(
        "SELECT version, message FROM updates WHERE snapshot_seq = $1 ORDER BY version", seq
    )
    chain: tuple[SnapshotProofChainEntry, ...] = ()
    if known_id is not None:
        known_seq = await conn.fetchval(
            "SELECT seq FROM snapshots WHERE doc_id = $1 AND snapshot_id = $2", doc_id, known_id
        )
        if known_seq is not None and known_seq < seq:
            chain = tuple(
                SnapshotProofChainEntry(*r)
                for r in await conn.fetch(
                    "SELECT snapshot_id, ciphertext_hash, parent_snapshot_proof FROM snapshots "
                    "WHERE doc_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
                    doc_id,
                    known_seq,
                    seq,
                )
            )
    last = rows[-1][0] if rows else 0
    return DocumentView(
        snapshot_message, tuple(r[1] for r in rows), chain, position(seq, last), False, True
    )
