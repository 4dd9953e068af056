"""WebSocket URIs (RFC 6455 section 3): ``ws://`` and ``wss://`` only.

:func:`parse_uri` turns what a user typed into the pieces a client needs: whether to use TLS,
where to connect, the resource name to put in the request line, the ``Host`` header and the
credentials for ``Authorization: Basic``. Non-ASCII text is turned into a valid URI the way
browsers do (IDNA for the host, UTF-8 percent-encoding for the path and query), so what reaches
the wire is always ASCII.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from dataclasses import dataclass, field

from wskit.exceptions import InvalidURI

__all__ = ["DEFAULT_PORTS", "WSURI", "parse_uri"]

#: RFC 6455 3: "port = <port, defaults to 80>" for ws and "<port, defaults to 443>" for wss.
DEFAULT_PORTS = {"ws": 80, "wss": 443}

# Characters kept as they are when percent-encoding a path or query: RFC 3986 2.2 reserved
# characters (their meaning must not change) and "%" (an escape already there stays one).
# Everything else outside RFC 3986 "unreserved" is percent-encoded as UTF-8, as browsers do
# when they turn an IRI into a URI (RFC 3987 3.1).
_PATH_SAFE = "!$&'()*+,/:;=?@[]~%"

# Characters of an RFC 3986 3.2.2 reg-name: unreserved / pct-encoded / sub-delims.
_REG_NAME_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;="
)


@dataclass(frozen=True, slots=True)
class WSURI:
    """A parsed ``ws://`` or ``wss://`` URI.

    ``host`` has no brackets, even for an IPv6 address (it is what ``connect()`` wants);
    ``resource_name`` is the path and query to send in the request line (RFC 6455 3), ``"/"``
    when the URI has no path; ``user_info`` is ``(user, password)``, percent-decoded, when the
    URI carries credentials (kept out of ``repr`` so that they do not end up in logs).
    """

    secure: bool
    host: str
    port: int
    resource_name: str
    user_info: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def host_header(self) -> str:
        """The value of the ``Host`` header for this URI.

        RFC 9110 7.2: the Host field carries "the host and port information from the target
        URI"; the port is left out when it is the scheme's default, as browsers do.
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = DEFAULT_PORTS["wss" if self.secure else "ws"]
        return host if self.port == default else f"{host}:{self.port}"


def parse_uri(uri: str) -> WSURI:
    """Parse a WebSocket URI; raise :class:`~wskit.exceptions.InvalidURI` if it is not one.

    The scheme is case-insensitive, ports default to 80 (ws) and 443 (wss), fragments are
    refused, and non-ASCII host names and paths are encoded (IDNA, UTF-8 percent-encoding).
    """
    # Browsers (WHATWG URL) strip leading and trailing spaces; control characters are refused
    # outright rather than silently removed, so that no CR/LF can reach a request line.
    text = uri.strip(" ")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise InvalidURI(uri, "contains a control character")
    # RFC 6455 3: "Fragment identifiers are meaningless in the context of WebSocket URIs and
    # MUST NOT be used on these URIs." (This also refuses an empty fragment, "ws://h/#".)
    if "#" in text:
        raise InvalidURI(uri, "WebSocket URIs must not contain a fragment")
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError as exc:
        raise InvalidURI(uri, str(exc)) from exc

    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidURI(uri, "the scheme must be ws or wss")
    if not parts.netloc:
        raise InvalidURI(uri, "missing host")

    userinfo, has_userinfo, hostport = parts.netloc.rpartition("@")
    host, port_text = _split_host_port(uri, hostport)
    host = _normalize_host(uri, host)

    if port_text:
        # Checked by hand: int() would accept "+80", " 80" or non-ASCII digits.
        if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
            raise InvalidURI(uri, f"invalid port {port_text!r}")
        port = int(port_text)
        if not 0 < port < 65536:
            raise InvalidURI(uri, f"port {port} is out of range")
    else:
        # RFC 3986 3.2.3: "URI producers and normalizers should omit the port component and
        # its ':' delimiter if port is empty" -- an empty port means the default one.
        port = DEFAULT_PORTS[scheme]

    # RFC 6455 3: "the resource-name [...] can be constructed by concatenating: '/' if the
    # path component is empty; the path component; '?' if the query component is non-empty;
    # the query component".
    path = urllib.parse.quote(parts.path, safe=_PATH_SAFE) or "/"
    resource_name = path
    if parts.query:
        resource_name += "?" + urllib.parse.quote(parts.query, safe=_PATH_SAFE)

    user_info: tuple[str, str] | None = None
    if has_userinfo:
        user, _, password = userinfo.partition(":")
        user_info = (urllib.parse.unquote(user), urllib.parse.unquote(password))

    return WSURI(
        secure=scheme == "wss",
        host=host,
        port=port,
        resource_name=resource_name,
        user_info=user_info,
    )


def _split_host_port(uri: str, hostport: str) -> tuple[str, str]:
    """Split ``host[:port]`` or ``[v6]:port`` into the host (no brackets) and the port text."""
    if hostport.startswith("["):
        host, bracket, rest = hostport[1:].partition("]")
        if not bracket:
            raise InvalidURI(uri, "unclosed '[' in the host")
        if rest and not rest.startswith(":"):
            raise InvalidURI(uri, "unexpected text after the IPv6 address")
        try:
            ipaddress.IPv6Address(urllib.parse.unquote(host))
        except ValueError as exc:
            raise InvalidURI(uri, f"invalid IPv6 address {host!r}") from exc
        return host.lower(), rest[1:]
    host, _, port_text = hostport.partition(":")
    return host, port_text


def _normalize_host(uri: str, host: str) -> str:
    """Lower-case the host, IDNA-encode a non-ASCII name, and refuse an empty or invalid one."""
    if not host:
        raise InvalidURI(uri, "missing host")
    if ":" in host:  # an IPv6 address, already checked by _split_host_port
        return host
    if not host.isascii():
        # Browsers send internationalized names in their ASCII (punycode) form.
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidURI(uri, f"invalid internationalized host name: {exc}") from exc
    if not _REG_NAME_CHARS.issuperset(host):
        raise InvalidURI(uri, f"invalid character in host {host!r}")
    return host.lower()
