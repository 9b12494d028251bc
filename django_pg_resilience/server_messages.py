"""What PostgreSQL and PgBouncer say when they are full, as :func:`errors.classify` reads it.

A server over its connection limit refuses the login with FATAL 53300. At connect
time libpq keeps no SQLSTATE (psycopg raises ``OperationalError`` with
``sqlstate=None``), so the server's words are all there is, and they are in the
server's ``lc_messages``: the login fails before the client's own settings apply.
The phrases below are PostgreSQL 15's own messages and every translation it ships
(the longest literal part of each, lower case), plus the English wording of later
releases. PgBouncer answers in English only, with SQLSTATE 08P01 (a connection
class code), so its words must be read before the SQLSTATE.
"""

from __future__ import annotations

__all__ = ["PGBOUNCER_BUSY_PHRASES", "SERVER_BUSY_PHRASES"]

#: 53300 too_many_connections: "sorry, too many clients already", reserved
#: slots (superuser / pg_use_reserved_connections), per-role and per-database limits.
SERVER_BUSY_PHRASES: tuple[str, ...] = (
    # English (PostgreSQL 12-17)
    "sorry, too many clients already",
    "remaining connection slots are reserved",
    "too many connections for role",
    "too many connections for database",
    # de
    "tut mir leid, schon zu viele verbindungen",
    "die verbleibenden verbindungen sind für superuser",
    "zu viele verbindungen von rolle",
    "zu viele verbindungen für datenbank",
    # es
    "lo siento, ya tenemos demasiados clientes",
    "las conexiones restantes están reservadas",
    "demasiadas conexiones para el rol",
    "demasiadas conexiones para la base de datos",
    # fr
    "trop de clients sont déjà connectés",
    "les emplacements de connexions restants sont réservés",
    "trop de connexions pour le rôle",
    "trop de connexions pour la base de données",
    # it
    "spiacente, troppi client già connessi",
    "i rimanenti slot di connessione sono riservati",
    "troppe connessioni per il ruolo",
    "troppe connessioni al database",
    # ja
    "現在クライアント数が多すぎます",
    "残りの接続スロットはレプリケーションユーザーではないスーパーユーザー用に予約されています",
    "からの接続が多すぎます",
    "への接続が多すぎます",
    # ka
    "უკაცრავად, უკვე მეტისმეტად ბევრი კლიენტია",
    "მეტისმეტად ბევრი კავშირი როლისთვის",
    "ძალიან ბევრი კავშირი ბაზისთვის",
    # ko
    "최대 동시 접속자 수를 초과했습니다",
    "남은 연결 슬롯은 non-replication 슈퍼유저 연결용으로 남겨 놓았음",
    "롤의 최대 동시 접속수를 초과했습니다",
    "데이터베이스 최대 접속수를 초과했습니다",
    # ru
    "извините, уже слишком много клиентов",
    "оставшиеся слоты подключений зарезервированы",
    "слишком много подключений для роли",
    "слишком много подключений к бд",
    # sv
    "ledsen, för många klienter",
    "resterande anslutningsslottar är reserverade",
    "för många uppkopplingar för roll",
    "för många uppkopplingar till databasen",
    # uk
    "вибачте, вже забагато клієнтів",
    "слоти підключень, які залишились, зарезервовані",
    "занадто багато підключень для ролі",
    "занадто багато підключень до бази даних",
    # zh_CN
    "客户端连接过多",
    "剩余连接槽位保留给超级用户的非复制连接",
    "的连接过多",
    # zh_TW
    "抱歉，客戶端過多",  # noqa: RUF001 (the server's own full-width comma)
    "剩餘的連線槽保留給非複寫的超級使用者連線",
    "的連線太多",
)

#: PgBouncer's own limits (SQLSTATE 08P01): its client limits, and a client that
#: waited longer than ``query_wait_timeout`` for a server connection.
PGBOUNCER_BUSY_PHRASES: tuple[str, ...] = (
    "no more connections allowed (max_client_conn)",
    "client connections exceeded",  # max_db_client_connections / max_user_client_connections
    "query_wait_timeout",
)
