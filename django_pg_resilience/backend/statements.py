"""What a statement does to a session: is it a read that may be re-run, does it change state?

A statement that was sent and lost with its connection may or may not have run.
Re-running it is safe only when running it twice changes nothing. That is
judged by an allowlist: a single ``SELECT`` (or ``WITH ... SELECT``, ``VALUES``,
``SHOW``, ``TABLE``) with no locking clause, no ``INTO``, no data-modifying CTE,
whose every function call is a known side-effect-free built-in. An unknown
function is not a read: it may take a lock, write, notify or call out. A user
function with side effects behind an operator or a view cannot be seen from
the SQL text: set ``retry_reads`` to False for an alias that hides such calls.

A read re-run on a new session also depends on what the lost session had set:
:func:`session_state_change` names the statements that leave such state behind
(``SET``, ``set_config(..., false)``, temporary objects, prepared statements,
``LISTEN``, session advisory locks, holdable cursors, ``LOAD``).

The SQL is split into tokens (strings, quoted identifiers and comments cannot
hide or fake a keyword); text that does not tokenize is never a read.
"""

from __future__ import annotations

import functools
import itertools
import re
from typing import NamedTuple

__all__ = ["is_read_statement", "session_state_change"]

_WORD, _IDENT, _LITERAL, _OP = "word", "ident", "literal", "op"

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|--[^\n]*)
    | (?P<comment>/\*)
    | (?P<literal>
        [eE]'(?:[^'\\]|\\.|'')*'
        | '(?:[^']|'')*'
        | \$(?P<tag>(?:[^\W\d]\w*)?)\$.*?\$(?P=tag)\$
        | \$\d+
        | (?:\d|\.\d)[\w.]*
      )
    | (?P<ident>"(?:[^"]|"")*")
    | (?P<word>[^\W\d][\w$]*)
    | (?P<op>::|(?!/\*)[^\s\w"'$])
    """,
    re.VERBOSE | re.DOTALL,
)


_COMMENT_MARK = re.compile(r"/\*|\*/")


def _comment_end(sql: str, position: int) -> int:
    """Where the block comment opened just before ``position`` ends (they nest), or -1."""
    depth = 1
    for mark in _COMMENT_MARK.finditer(sql, position):
        depth += 1 if mark.group() == "/*" else -1
        if depth == 0:
            return mark.end()
    return -1


class _Token(NamedTuple):
    kind: str
    text: str  # words lowercased, quoted identifiers unquoted with their case kept


@functools.lru_cache(maxsize=1024)
def _tokens(sql: str) -> tuple[_Token, ...] | None:
    """The tokens of ``sql`` without whitespace and comments; None if it does not tokenize."""
    tokens: list[_Token] = []
    position, end = 0, len(sql)
    while position < end:
        match = _TOKEN.match(sql, position)
        if match is None:
            return None  # an unterminated string or comment, a stray quote
        position = match.end()
        kind = match.lastgroup
        if kind == "comment":
            position = _comment_end(sql, position)
            if position < 0:
                return None
            continue
        if kind == _WORD:
            tokens.append(_Token(_WORD, match.group().lower()))
        elif kind == _IDENT:
            tokens.append(_Token(_IDENT, match.group()[1:-1].replace('""', '"')))
        elif kind != "space":
            tokens.append(_Token(str(kind), match.group()))
    return tuple(tokens)


def _statements(tokens: tuple[_Token, ...]) -> list[tuple[_Token, ...]]:
    """The non-empty statements of a ``;``-separated token list."""
    statements: list[tuple[_Token, ...]] = []
    start = 0
    for index, token in enumerate((*tokens, _Token(_OP, ";"))):
        if token == (_OP, ";"):
            if index > start:
                statements.append(tokens[start:index])
            start = index + 1
    return statements


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _follows(words: list[str], first: str, following: frozenset[str]) -> bool:
    """Whether ``first`` is directly followed by one of ``following`` somewhere in ``words``."""
    return any(a == first and b in following for a, b in itertools.pairwise(words))


def _words(tokens: tuple[_Token, ...]) -> list[str]:
    return [token.text for token in tokens if token.kind == _WORD]


# --- function calls ------------------------------------------------------------


class _Call(NamedTuple):
    schema: str | None
    name: str
    at: int  # the name token's index; its "(" follows


# Keywords that a "(" may follow without being a function call.
_STRUCTURAL_KEYWORDS = _names(
    """all and any array as between by case cross distinct else escape except exists filter first
    from full group having ilike in inner intersect is join lateral like limit materialized natural
    next not offset on only operator or outer over overlaps recursive select sets similar some then
    to union using values when where with within zone"""
)


_CTE_BODY_STARTS = frozenset({"(", "materialized", "not"})


def _closing_paren(tokens: tuple[_Token, ...], opening: int) -> int:
    depth = 0
    for index in range(opening, len(tokens)):
        if tokens[index] == (_OP, "("):
            depth += 1
        elif tokens[index] == (_OP, ")"):
            depth -= 1
            if depth == 0:
                return index
    return len(tokens)


def _calls(tokens: tuple[_Token, ...]) -> list[_Call]:
    """Every ``name(`` / ``schema.name(`` that is a function call, not a type or a column list."""
    calls = []
    for index in range(len(tokens) - 1):
        token = tokens[index]
        if tokens[index + 1] != (_OP, "(") or token.kind not in (_WORD, _IDENT):
            continue
        if token.kind == _WORD and token.text in _STRUCTURAL_KEYWORDS:
            continue
        schema = None
        start = index
        if index >= 2 and tokens[index - 1] == (_OP, "."):
            schema = tokens[index - 2].text
            start = index - 2
        before = tokens[start - 1] if start > 0 else None
        if before in ((_OP, "::"), (_WORD, "as")):
            continue  # a type modifier (``::numeric(10, 2)``) or an alias's column list
        after = tokens[_closing_paren(tokens, index + 1) + 1 :][:2]
        if after[:1] == ((_WORD, "as"),) and after[1:] and after[1].text in _CTE_BODY_STARTS:
            continue  # a CTE's column list: ``WITH totals (n) AS (...)``
        calls.append(_Call(schema, token.text, index))
    return calls


# --- reads ----------------------------------------------------------------------

_READ_STARTS = frozenset({"select", "with", "values", "show", "table"})
_WRITE_WORDS = frozenset({"insert", "update", "delete", "merge", "into"})
_LOCKING_AFTER_FOR = frozenset({"update", "share", "no", "key"})

# Side-effect-free functions (PostgreSQL built-ins and common extensions' reads).
# Volatile is fine (random(), now(), pg_sleep()): running them twice writes nothing.
# Left out on purpose: sequences (nextval, setval), txid_current() (assigns an
# xid), set_config(), setseed(), advisory locks, pg_notify(), large objects,
# dblink, anything that signals, reloads, writes WAL or creates slots.
_SAFE_FUNCTIONS = _names(
    """
    count sum avg min max every bool_and bool_or bit_and bit_or bit_xor array_agg string_agg
    stddev stddev_pop stddev_samp variance var_pop var_samp corr covar_pop covar_samp
    regr_avgx regr_avgy regr_count regr_intercept regr_r2 regr_slope regr_sxx regr_sxy regr_syy
    percentile_cont percentile_disc mode range_agg range_intersect_agg any_value xmlagg grouping
    rollup cube
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value
    nth_value
    coalesce nullif greatest least cast extract row
    length char_length character_length octet_length bit_length lower upper initcap concat
    concat_ws substring substr left right lpad rpad ltrim rtrim btrim trim replace reverse repeat
    strpos position split_part regexp_replace regexp_match regexp_matches regexp_split_to_array
    regexp_split_to_table regexp_count regexp_instr regexp_like regexp_substr translate format
    quote_ident quote_literal quote_nullable md5 sha224 sha256 sha384 sha512 encode decode ascii
    chr to_hex starts_with overlay normalize convert_from convert_to string_to_array
    string_to_table array_to_string unaccent digest hmac similarity word_similarity
    strict_word_similarity show_trgm levenshtein soundex metaphone dmetaphone difference
    abs cbrt ceil ceiling degrees div exp factorial floor gcd lcm ln log log10 mod pi power pow
    radians round scale sign sqrt trunc width_bucket random random_normal acos acosd asin asind
    atan atand atan2 atan2d cos cosd cot cotd sin sind tan tand sinh cosh tanh asinh acosh atanh
    now date_trunc date_part date_bin age make_date make_time make_timestamp make_timestamptz
    make_interval to_char to_date to_timestamp to_number timezone justify_days justify_hours
    justify_interval isfinite current_date current_time current_timestamp localtime
    localtimestamp clock_timestamp statement_timestamp transaction_timestamp timeofday date_add
    date_subtract
    to_json to_jsonb row_to_json array_to_json json_object json_array json_exists json_value
    json_query json_scalar json_serialize
    array_length array_position array_positions cardinality array_append array_prepend array_cat
    array_remove array_replace array_dims array_lower array_upper array_ndims array_fill
    trim_array unnest generate_series generate_subscripts
    isempty lower_inc upper_inc lower_inf upper_inf range_merge multirange int4range int8range
    numrange tsrange tstzrange daterange int4multirange int8multirange nummultirange
    tsmultirange tstzmultirange datemultirange
    to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery ts_rank
    ts_rank_cd ts_headline setweight strip numnode querytree ts_rewrite tsvector_to_array
    array_to_tsvector ts_lexize
    int2 int4 int8 integer smallint bigint float4 float8 float real numeric decimal text varchar
    char character varying bool boolean date time timestamp timestamptz interval bit varbit
    uuid json jsonb inet cidr macaddr bytea money
    gen_random_uuid uuid_generate_v4 host hostmask netmask network masklen broadcast family
    current_setting current_database current_schema current_schemas current_catalog current_user
    current_role session_user user version inet_server_addr inet_server_port inet_client_addr
    inet_client_port pg_backend_pid pg_is_in_recovery pg_postmaster_start_time pg_conf_load_time
    pg_current_wal_lsn pg_current_wal_insert_lsn pg_current_wal_flush_lsn pg_walfile_name
    pg_walfile_name_offset pg_wal_lsn_diff pg_last_wal_receive_lsn pg_last_wal_replay_lsn
    pg_last_xact_replay_timestamp pg_control_system pg_control_checkpoint pg_control_recovery
    pg_control_init pg_size_bytes pg_size_pretty pg_relation_size pg_total_relation_size
    pg_table_size pg_indexes_size pg_database_size pg_column_size pg_typeof pg_sleep
    pg_table_is_visible pg_type_is_visible pg_function_is_visible pg_get_indexdef
    pg_get_constraintdef pg_get_expr pg_get_viewdef pg_get_functiondef pg_get_triggerdef
    pg_get_userbyid pg_get_serial_sequence pg_encoding_to_char pg_get_partkeydef
    pg_index_column_has_property pg_relation_filenode pg_tablespace_location pg_jit_available
    format_type obj_description col_description shobj_description has_table_privilege
    has_column_privilege has_schema_privilege has_database_privilege has_function_privilege
    has_sequence_privilege pg_has_role to_regclass to_regtype to_regproc to_regnamespace
    """
)

# Families whose every member is a read: SQL/JSON and jsonb functions, and PostGIS
# geometry functions, minus PostGIS topology's editors (ST_AddIsoNode,
# ST_ModEdgeSplit, ST_CreateTopoGeo, ...), which write the topology's tables.
_SAFE_PREFIX = re.compile(r"(?:jsonb?_|st_(?!add|mod|new|rem|change|move|init|create))\w*\Z")


def _is_safe_function(call: _Call) -> bool:
    if call.schema not in (None, "pg_catalog"):
        return False  # a user's schema may hold anything, under any name
    return call.name in _SAFE_FUNCTIONS or _SAFE_PREFIX.match(call.name) is not None


@functools.lru_cache(maxsize=1024)
def is_read_statement(sql: str) -> bool:
    """True when ``sql`` is a read that may be re-run on a new connection."""
    tokens = _tokens(sql)
    if tokens is None:
        return False
    statements = _statements(tokens)
    if len(statements) != 1:
        return False  # several statements (or none): judge none of them
    (statement,) = statements
    first = next((token for token in statement if token != (_OP, "(")), None)
    if first is None or first.kind != _WORD or first.text not in _READ_STARTS:
        return False
    words = _words(statement)
    if _WRITE_WORDS.intersection(words) or _follows(words, "for", _LOCKING_AFTER_FOR):
        return False
    return all(_is_safe_function(call) for call in _calls(statement))


# --- session state -------------------------------------------------------------

_SESSION_ADVISORY_LOCKS = frozenset(
    {
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
    }
)
_KINDS = frozenset({"table", "view", "sequence", "function", "procedure"})
_TRUE_LITERALS = frozenset({"true", "'t'", "'true'", "'on'", "'yes'", "'y'", "'1'"})
# A cheap first look (about a microsecond, on the happy path): a statement whose
# lowercased text has none of these has no session state to change.
_MAYBE_SESSION_STATE = re.compile(r"set|temp|prepare|listen|declare|load|advisory_lock")


def _arguments(tokens: tuple[_Token, ...], name_index: int) -> list[tuple[_Token, ...]]:
    """The top-level, comma-separated arguments of the call whose name is at ``name_index``."""
    opening = name_index + 1
    closing = _closing_paren(tokens, opening)
    arguments: list[tuple[_Token, ...]] = []
    depth, start = 0, opening + 1
    for index in range(opening + 1, closing):
        token = tokens[index]
        if token == (_OP, "("):
            depth += 1
        elif token == (_OP, ")"):
            depth -= 1
        elif token == (_OP, ",") and depth == 0:
            arguments.append(tokens[start:index])
            start = index + 1
    arguments.append(tokens[start:closing])
    return arguments


def _set_config_change(tokens: tuple[_Token, ...], call: _Call) -> str | None:
    arguments = _arguments(tokens, call.at)
    is_local = arguments[2] if len(arguments) == 3 else ()
    if len(is_local) == 1 and is_local[0].text.lower() in _TRUE_LITERALS:
        return None  # transaction-local, like SET LOCAL
    name = arguments[0]
    shown = name[0].text if len(name) == 1 and name[0].kind == _LITERAL else "..."
    return f"set_config({shown}) for the session"


def _call_change(tokens: tuple[_Token, ...]) -> str | None:
    for call in _calls(tokens):
        if call.schema not in (None, "pg_catalog"):
            continue
        if call.name in _SESSION_ADVISORY_LOCKS:
            return f"session advisory lock ({call.name})"
        if call.name == "set_config":
            change = _set_config_change(tokens, call)
            if change:
                return change
    return None


def _set_change(words: list[str]) -> str | None:
    scope = words[1] if len(words) > 1 else ""
    if scope == "local" or scope in ("transaction", "constraints"):
        return None  # lasts until the end of the transaction
    rest = words[2:] if scope == "session" else words[1:]
    if rest[:1] == ["characteristics"]:
        return "SET SESSION CHARACTERISTICS"
    if rest[:1] == ["authorization"]:
        return "SET SESSION AUTHORIZATION"
    if rest[:1] == ["role"]:
        return "SET ROLE"
    if rest[:2] == ["time", "zone"]:
        return "SET TIME ZONE"
    return f"SET {rest[0]}" if rest else "SET"


def _create_change(statement: tuple[_Token, ...]) -> str | None:
    kind_at = next(
        (i for i, token in enumerate(statement) if token.kind == _WORD and token.text in _KINDS),
        None,
    )
    if kind_at is None:
        return None
    kind = statement[kind_at].text.upper()
    if {"temp", "temporary"}.intersection(_words(statement[:kind_at])):
        return f"CREATE TEMPORARY {kind}"
    # The object's name, after an optional IF NOT EXISTS: pg_temp.name is temporary too.
    name = [token.text for token in statement[kind_at + 1 : kind_at + 6]]
    if "pg_temp" in name and name[name.index("pg_temp") + 1 :][:1] == ["."]:
        return f"CREATE {kind} pg_temp"
    return None


def _statement_change(statement: tuple[_Token, ...]) -> str | None:
    words = _words(statement)
    if not words:
        return None
    command = words[0] if statement[0].kind == _WORD else ""
    if command == "set":
        return _set_change(words)
    if command == "reset":
        return f"RESET {' '.join(words[1:3])}".rstrip()
    if command == "create":
        return _create_change(statement)
    if command == "prepare" and words[1:2] != ["transaction"]:
        return "PREPARE"
    if command == "listen":
        return "LISTEN"
    if command == "load":
        return "LOAD"
    if command == "declare":
        head = words[: words.index("for")] if "for" in words else words
        if _follows(head, "with", frozenset({"hold"})):
            return "DECLARE ... WITH HOLD"
    if "into" in words:
        following = words[words.index("into") + 1 :][:2]
        if command in ("select", "with") and ("temp" in following or "temporary" in following):
            return "SELECT INTO TEMPORARY"
    return _call_change(statement)


@functools.lru_cache(maxsize=1024)
def session_state_change(sql: str) -> str | None:
    """What ``sql`` leaves behind in the session that a later read may depend on, if anything.

    A short reason (``"SET search_path"``, ``"LISTEN"``, ``"session advisory
    lock (pg_advisory_lock)"``...) or None. Transaction-scoped changes
    (``SET LOCAL``, ``set_config(..., true)``, ``pg_advisory_xact_lock``) are
    None: they end with the transaction the lost connection took with it.
    Text that does not tokenize is judged a change when it mentions one. What runs
    inside a function or a ``DO`` block cannot be seen from here.
    """
    if _MAYBE_SESSION_STATE.search(sql.lower()) is None:
        return None
    tokens = _tokens(sql)
    if tokens is None:
        return "unparsed statement"
    for statement in _statements(tokens):
        change = _statement_change(statement)
        if change:
            return change
    return None
