"""The transport side of the hand-over record: bytes in the kernel, corked sockets."""

from __future__ import annotations

import asyncio
import socket

import pytest

from avisos_dispatcher.handover import corked, in_kernel


class _FakeTransport(asyncio.WriteTransport):
    """Reports ``unsent`` bytes, handing ``per_poll`` of them to the "kernel" per look."""

    def __init__(self, unsent: int, per_poll: int = 0, closing: bool = False) -> None:
        super().__init__()
        self.unsent, self.per_poll, self.closing, self.polls = unsent, per_poll, closing, 0

    def get_write_buffer_size(self) -> int:
        self.polls += 1
        left = self.unsent
        self.unsent = max(0, self.unsent - self.per_poll)
        return left

    def is_closing(self) -> bool:
        return self.closing


def test_in_kernel_does_not_suspend_when_everything_left() -> None:
    """The hand-over record must follow the last bytes in the same synchronous step."""
    coro = in_kernel(_FakeTransport(0))
    with pytest.raises(StopIteration):
        coro.send(None)  # ran to the end without awaiting anything


async def test_in_kernel_waits_for_bytes_still_in_the_process() -> None:
    transport = _FakeTransport(3000, per_poll=1000)
    await in_kernel(transport)
    assert transport.unsent == 0 and transport.polls == 4


async def test_in_kernel_refuses_a_closing_connection() -> None:
    with pytest.raises(ConnectionError):
        await in_kernel(_FakeTransport(0, closing=True))
    with pytest.raises(ConnectionError):
        await in_kernel(None)


async def test_corked_holds_the_socket_only_inside_the_block() -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.put_nowait(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.transport.get_extra_info("socket")

    def cork_state() -> int:
        return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK))

    with corked(writer.transport):
        assert cork_state() == 1
        writer.write(b".\r\n")
        await in_kernel(writer.transport)  # in the kernel, held back
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(got.get(), 0.05)
    assert cork_state() == 0
    assert await asyncio.wait_for(got.get(), 5) == b".\r\n"  # uncorking sent it
    writer.close()
    server.close()


def test_corked_is_a_no_op_without_a_tcp_socket() -> None:
    with corked(None):
        pass
