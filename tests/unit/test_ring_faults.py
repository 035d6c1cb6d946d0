"""How tier B decides whether a failed restic call at the peer is retried: from what is
known (ssh's exit status recorded by the sftp.command wrapper, restic's exit code, a second
look at the link and the repository), never from a list of words in restic's message."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from axe_pipelines.peer import RingError, SshRecord
from axe_pipelines.restic import (
    LockHolder,
    RepositoryLocked,
    ResticFatal,
    ResticTimeout,
    WrongPassword,
)
from axe_pipelines.ring import LinkFacts, classify

WHERE, HOST = "realchoice at localhost", "localhost"
# restic's own words after the link died: what the operator must not be left with.
LINK_DIED = ResticFatal("tier B repository of axe at realchoice (sftp:x): copying 7 snapshot(s) "
                        "failed: context canceled", restic_exit=1,
                        detail="Remove(<lock/1f2e>) failed: connection lost")


def decide(exc, **facts) -> RingError:
    return classify(exc, WHERE, HOST, LinkFacts(**facts))


def test_ssh_failing_mid_call_is_a_dropped_link_in_axes_words_and_retried():
    err = decide(LINK_DIED, ssh_exits=(255,), silent_s=30,
                 ssh_said=("Timeout, server localhost not responding.",))
    assert err.retryable and err.ssh_exit == 255 and err.host == HOST
    text = str(err)
    assert text.startswith("tier B: the link to realchoice at localhost dropped: no answer for "
                           "30 s (ssh's keepalive gave up) (ssh exit 255)")
    assert "local tier unaffected" in text and "axe backup --ring" in text
    assert "context canceled" not in text and "Remove(" not in text
    # Another reason ssh gave is quoted as ssh said it.
    reset = decide(LINK_DIED, ssh_exits=(0, 255), ssh_said=("Connection reset by peer",))
    assert reset.retryable and "dropped: Connection reset by peer (ssh exit 255)" in str(reset)


def test_a_remote_exit_status_is_not_an_ssh_failure():
    """Only 255 is ssh's own failure; any other status is the remote sftp-server's (or a
    signal's), so restic's failure is looked at again instead."""
    err = decide(LINK_DIED, ssh_exits=(141,), repository_opens=True)
    assert err.ssh_exit is None and "not a link or repository fault" in str(err)


def test_timeout_and_live_lock_are_retried_wrong_password_is_not():
    timeout = decide(ResticTimeout("tier B repository: copying did not finish within 3600 s"))
    assert timeout.retryable and "did not finish within 3600 s" in str(timeout)
    locked = decide(RepositoryLocked("tier B repository is locked by PID 7 on peer",
                                     holder=LockHolder(7, "peer", "kim", "now")),
                    repository_opens=True)
    assert locked.retryable and "locked by PID 7" in str(locked)
    wrong = decide(WrongPassword("wrong password for tier B repository (environment variable "
                                 "RING)", restic_exit=12))
    assert not wrong.retryable and "not retried" in str(wrong)


def test_a_repository_that_no_longer_opens_is_damaged_and_not_retried():
    err = decide(ResticFatal("tier B repository: listing locks failed: config: ciphertext "
                             "verification failed", restic_exit=1),
                 ssh_exits=(0,), repository_opens=False)
    assert not err.retryable
    assert "no longer opens, so it is damaged" in str(err) and "restic check" in str(err)


def test_a_link_that_no_longer_answers_decides_like_the_probe_did():
    refused = RingError("tier B: realchoice at localhost refused our key /k (ssh exit 255, "
                        "Permission denied (publickey)); ...", retryable=True, ssh_exit=255)
    err = decide(ResticFatal("x: copying failed: unexpected EOF", restic_exit=1),
                 ssh_exits=(0,), link_error=refused)
    assert err.retryable and err.ssh_exit == 255
    assert "unexpected EOF; looked again: realchoice at localhost refused our key" in str(err)
    hostkey = RingError("tier B: host key ... does not match", retryable=False, ssh_exit=255)
    assert not decide(LINK_DIED, ssh_exits=(0,), link_error=hostkey).retryable


def test_an_unknown_failure_with_link_and_repository_fine_is_retried():
    """The fault class the old word list got wrong: restic exit 1 with a message nobody
    foresaw (no link word in it) used to be "damaged repository, not retried"."""
    odd = ResticFatal("tier B repository: copying 7 snapshot(s) failed: sftp: \"Failure\" "
                      "(SSH_FX_FAILURE) while saving data/3f/3f2a", restic_exit=1)
    err = decide(odd, ssh_exits=(0,), repository_opens=True)
    assert err.retryable and err.ssh_exit is None
    assert "SSH_FX_FAILURE" in str(err)  # restic's words, since axe has none better
    assert "not a link or repository fault (ssh stayed up, the link answers, the " \
           "repository opens), so it is retried" in str(err)


@pytest.mark.parametrize(("exits", "recorded"), [((0,), [0]), ((255,), [255]),
                                                 ((0, 255, 3), [0, 255, 3])])
def test_the_wrapper_records_each_sessions_exit_status(exits, recorded):
    """The sftp.command wrapper run by sh as restic runs it: one status per session (here
    `sh -c 'exit N'` stands in for ssh), passed through unchanged."""
    with SshRecord() as record:
        for code in exits:
            command = shlex.join(["sh", str(record.wrapper), "sh", "-c", f"exit {code}"])
            assert '"' not in command  # restic reads `-o` values as CSV: no bare quote
            done = subprocess.run(shlex.split(command), timeout=30)
            assert done.returncode == code
        assert record.sessions() == recorded
        assert record.ssh_said() == []
    assert not record.folder.exists()


def test_a_session_still_running_is_unknown_not_a_failure():
    with SshRecord() as record:
        record.sessions_file.write_text("start\nexit 0\nstart\n")
        assert record.sessions(settle_s=0.1) == [0, None]
