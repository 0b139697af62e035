"""The rest of ``multiprocessing.connection``'s surface through the face: families,
addresses, invalid handles and families, the two handshake halves, XML connections.
Each scenario runs on the standard module and on plait's face alike."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import threading

import pytest

import plait.multiprocessing
import plait.multiprocessing.connection

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(60)]

KEY = b"a shared secret"


@pytest.fixture(
    params=[multiprocessing.connection, plait.multiprocessing.connection],
    ids=["multiprocessing", "plait"],
)
def mc(request):
    """``multiprocessing.connection`` or plait's face of it."""
    return request.param


def test_the_face_has_every_public_name_with_a_meaning():
    standard = {n for n in dir(multiprocessing.connection) if not n.startswith("_")}
    modules = {"errno", "io", "itertools", "os", "reduction", "selectors", "socket"}
    # xmlrpclib: the module the standard XmlListener/XmlClient bind once first used
    modules |= {"struct", "sys", "tempfile", "time", "util", "xmlrpclib"}
    absent = {"BUFSIZE"}  # no read buffer to size: see the face's docstring
    missing = standard - modules - absent - set(dir(plait.multiprocessing.connection))
    assert missing == set()


def test_every_family_listens_once_per_address(mc):
    assert set(mc.families) == {"AF_INET", "AF_UNIX"}
    assert mc.default_family == "AF_UNIX"
    for family in mc.families:
        with mc.Listener(family=family) as listener:
            assert mc.address_type(listener.address) == family
            with pytest.raises(OSError):
                mc.Listener(listener.address, family)
            with mc.Client(listener.address) as client, listener.accept() as server:
                server.send_bytes(b"hello")
                assert client.poll(5)
                assert client.recv_bytes() == b"hello"


def test_addresses_and_families_are_named(mc):
    assert mc.address_type(("localhost", 0)) == "AF_INET"
    assert mc.address_type("/tmp/x") == "AF_UNIX"
    assert mc.address_type(r"\\.\pipe\x") == "AF_PIPE"
    with pytest.raises(TypeError):
        mc.address_type(3)
    assert mc.arbitrary_address("AF_INET") == ("localhost", 0)
    assert isinstance(mc.arbitrary_address("AF_UNIX"), str)
    with pytest.raises(ValueError):
        mc.Listener(r"\\.\test")  # a Windows pipe name


def test_an_unopened_handle_fails_on_use_and_a_negative_one_at_once(mc):
    conn = mc.Connection(44977608)
    assert not conn.closed
    with pytest.raises(OSError):
        conn.recv_bytes()
    with pytest.raises(OSError):
        conn.send_bytes(b"x")
    conn._handle = None  # the standard connection would close it in __del__
    with pytest.raises(ValueError):
        mc.Connection(-1)


class _Bogus:
    """A connection whose peer answers nonsense."""

    def __init__(self, first=None):
        self.first = first

    def recv_bytes(self, maxlength=None):
        message, self.first = self.first or b"something bogus", None
        return message

    def send_bytes(self, data):
        pass


def test_the_handshake_halves_refuse_a_bogus_peer(mc):
    with pytest.raises(multiprocessing.AuthenticationError):
        mc.deliver_challenge(_Bogus(), KEY)
    with pytest.raises(multiprocessing.AuthenticationError):
        # The prefix is private from Python 3.12 on, in both modules.
        challenge = getattr(mc, "CHALLENGE", None) or mc._CHALLENGE
        mc.answer_challenge(_Bogus(challenge), KEY)


@pytest.mark.parametrize("client_key", [KEY, b"another key"])
def test_hand_made_ends_authenticate_each_other(mc, client_key):
    outcome = {}
    with mc.Listener() as listener:

        def serve():
            with listener.accept() as conn:
                try:
                    mc.deliver_challenge(conn, KEY)
                    mc.answer_challenge(conn, KEY)
                    conn.send("welcome")
                    outcome["server"] = "ok"
                except multiprocessing.AuthenticationError:
                    outcome["server"] = "refused"

        thread = threading.Thread(target=serve)
        thread.start()
        with mc.Client(listener.address) as conn:
            try:
                mc.answer_challenge(conn, client_key)
                mc.deliver_challenge(conn, client_key)
                outcome["client"] = conn.recv()
            except multiprocessing.AuthenticationError:
                outcome["client"] = "refused"
        thread.join(30)
    if client_key == KEY:
        assert outcome == {"server": "ok", "client": "welcome"}
    else:
        assert outcome["client"] == "refused"


def test_a_hand_made_client_talks_to_an_authenticating_listener():
    mc = plait.multiprocessing.connection
    with mc.Listener(authkey=KEY) as listener:
        thread = threading.Thread(target=lambda: listener.accept().send("welcome"))
        thread.start()
        with mc.SocketClient(listener.address) as conn:
            mc.answer_challenge(conn, KEY)
            mc.deliver_challenge(conn, KEY)
            assert conn.recv() == "welcome"
        thread.join(30)


def test_xml_connections_carry_plain_data(mc):
    with mc.XmlListener() as listener:
        client = mc.XmlClient(listener.address)
        server = listener.accept()
        client.send({"numbers": [1, 2.5], "text": "héllo"})
        assert server.recv() == {"numbers": [1, 2.5], "text": "héllo"}
        server.close()
        client.close()


def test_socket_listener_and_client_skip_authentication(mc):
    listener = mc.SocketListener(mc.arbitrary_address("AF_INET"), "AF_INET")
    try:
        with mc.SocketClient(listener._address) as client, listener.accept() as server:
            client.send([1, 2])
            assert server.recv() == [1, 2]
    finally:
        listener.close()
