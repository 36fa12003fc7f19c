"""Attached files: read as text (plain, PDF), handed to the team, stored on disk behind signed URLs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from test_turn import SOLO, make_chorus, messages

from chorus.attachments import Attachment, AttachmentError, read_attachment, split_attachments, with_attachments
from chorus.models import scripted_model
from chorus.models.offline import answer_from_files
from chorus.store.files import ROUTE, FileStoreError, LocalFileStore, delete_owner_files, safe_key, serving_type
from chorus.turn import run_turn


def tiny_pdf(lines: list[str]) -> bytes:
    """A valid one-page PDF whose text layer holds ``lines`` (written by hand: no PDF library needed)."""
    ops = ["BT", "/F1 12 Tf", "72 720 Td", "14 TL"]
    for line in lines:
        ops.append("(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*")
    ops.append("ET")
    stream = "\n".join(ops).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> "
        b"/Contents 4 0 R >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_text_pdf_and_refused_files(tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Store policy\nRefunds take five days.\n", encoding="utf-8")
    assert read_attachment(notes, "notes.md", "text/markdown", max_chars=1000).text.endswith("five days.")

    pdf = tmp_path / "policy.pdf"
    pdf.write_bytes(tiny_pdf(["Shipping is free over 50 euros.", "Refunds take five days."]))
    text = read_attachment(pdf, "policy.pdf", "application/pdf", max_chars=1000).text
    assert "Shipping is free over 50 euros." in text and "Refunds take five days." in text

    long = read_attachment(notes, "notes.md", None, max_chars=10)
    assert long.truncated and len(long.text) == 10

    binary = tmp_path / "data.txt"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(AttachmentError, match="not a text file"):
        read_attachment(binary, "data.txt", "text/plain", max_chars=1000)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 this is not really a pdf")
    with pytest.raises(AttachmentError, match=r"broken\.pdf"):
        read_attachment(broken, "broken.pdf", "application/pdf", max_chars=1000)
    with pytest.raises(AttachmentError, match="image/png"):
        read_attachment(binary, "photo.png", "image/png", max_chars=1000)


def test_attachments_round_trip_through_the_task_text() -> None:
    files = [Attachment("a.md", "uses ``` fences\ninside"), Attachment("b.txt", "plain")]
    text = with_attachments("What do these say?", files)
    assert split_attachments(text) == ("What do these say?", files)
    assert split_attachments("no files here") == ("no files here", [])


def test_offline_model_quotes_the_lines_that_answer_the_question() -> None:
    files = [Attachment("policy.md", "Shipping is free over 50 euros.\nRefunds take five days.")]
    answer = answer_from_files("How long do refunds take?", files)
    assert "Refunds take five days." in answer and "policy.md" in answer and "Shipping" not in answer
    overview = answer_from_files("", files)
    assert "policy.md" in overview and "2 lines" in overview and "Shipping is free" in overview


async def test_the_team_sees_attached_files_after_the_users_words() -> None:
    session = make_chorus(SOLO).open_session()
    scripted_model.queue("Five days.")
    events = [e async for e in run_turn(session, "How long do refunds take?",
                                        attachments=[Attachment("policy.md", "Refunds take five days.\x07")])]
    assert messages(events) == [("alice", "Five days.")]
    seen = [m.get("content") for m in scripted_model.requests[-1].messages if m.get("role") == "user"][-1]
    assert seen.startswith("How long do refunds take?") and "Attached file policy.md" in seen
    assert "Refunds take five days." in seen and "\x07" not in seen

    # A file alone, with no words, is a message too.
    scripted_model.queue("I see a file.")
    events = [e async for e in run_turn(session, "  ", attachments=[Attachment("a.txt", "hello")])]
    assert events[-1].stop_reason != "error"  # type: ignore[attr-defined]


def test_file_keys_cannot_leave_the_store(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "files", secret="s3cret")
    assert safe_key("user/el/../../etc/passwd") == "user/el/etc/passwd"
    assert safe_key("u/e/<script>.html") == "u/e/_script_.html"
    for bad in ("", "..", "/", "./.."):
        with pytest.raises(FileStoreError):
            store.path(bad)
    for key in ("../../outside", "/etc/passwd", "a/../../../b"):
        assert store.path(key).is_relative_to(store.root)
    assert serving_type("x.html") == ("application/octet-stream", False)
    assert serving_type("x.svg") == ("application/octet-stream", False)
    assert serving_type("x.md")[1] and serving_type("x.pdf") == ("application/pdf", True)


def test_signed_urls_open_only_their_file_and_expire(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LocalFileStore(tmp_path / "files", secret="s3cret")
        saved = await store.upload_file("user-1/el-1/notes.md", b"hello", "text/markdown")
        assert saved["object_key"] == "user-1/el-1/notes.md"
        assert (tmp_path / "files" / "user-1" / "el-1" / "notes.md").read_bytes() == b"hello"

        url = urlsplit(saved["url"])
        assert url.path.startswith(ROUTE)
        key, query = unquote(url.path[len(ROUTE):]), parse_qs(url.query)
        expires, signature = query["expires"][0], query["signature"][0]
        assert store.verify(key, expires, signature) == store.path(key)
        assert store.verify(key, expires, "0" * 64) is None  # tampered
        assert store.verify("user-2/el-1/notes.md", expires, signature) is None  # another file
        assert store.verify(key, str(int(expires) + 1), signature) is None  # extended
        other = LocalFileStore(tmp_path / "files", secret="another")
        assert other.verify(key, expires, signature) is None  # another server's secret
        stale = LocalFileStore(tmp_path / "files", secret="s3cret", ttl_s=-1)
        old = parse_qs(urlsplit(await stale.get_read_url(key)).query)
        assert stale.verify(key, old["expires"][0], old["signature"][0]) is None  # expired
        assert int(expires) > time.time()

        assert await store.delete_file(key)
        assert not (tmp_path / "files" / "user-1").exists()  # empty folders go too
        assert not await store.delete_file(key)

        await store.upload_file("user-3/el-2/a.txt", "text", "text/plain")
        delete_owner_files(tmp_path / "files", "user-3")
        assert not (tmp_path / "files" / "user-3").exists() and (tmp_path / "files").exists()

    asyncio.run(scenario())


def test_only_a_drawing_chorus_signed_is_served_as_a_picture(tmp_path: Path) -> None:
    from chorus.tracing.picture import Arrow, TurnPicture

    store = LocalFileStore(tmp_path / "files", secret="s3cret")
    drawing = TurnPicture(participants=["user", "guide"],
                          arrows=[Arrow("ask", "user", "guide", 'How do I set onclick = "x" in javascript:?')])
    signed = store.sign_drawing(drawing.svg().encode())
    assert store.signed_drawing(signed)  # a turn map, whatever its words, is shown inline
    assert not store.signed_drawing(drawing.svg().encode())  # unsigned: a download
    assert not store.signed_drawing(signed.replace(b"guide", b"evil!"))  # changed since: a download
    assert not LocalFileStore(tmp_path / "other", secret="another").signed_drawing(signed)
    forged = b"<!--chorus-drawing " + b"0" * 64 + b' -->\n<svg><script>alert(1)</script></svg>'
    assert not store.signed_drawing(forged)


def test_files_in_a_reply_are_read_whole_and_saved_without_stopping_at_a_bad_one(tmp_path: Path) -> None:
    from chorus import files_in
    from chorus.produced import save_files

    reply = ("### File: `README.md`\n````markdown\n# Use\n```bash\npython app.py\n```\nDone.\n````\n\n"
             "### File: `src`\n```\nnot a folder\n```\n\n### File: `src/app.py`\n```python\nprint(1)\n```\n"
             "### File: `../escape.py`\n```python\nprint('out')\n```\n")
    files = {f.name: f.content for f in files_in(reply)}
    assert files["README.md"] == "# Use\n```bash\npython app.py\n```\nDone.\n"  # an inner block is kept
    assert "../escape.py" not in files and "escape.py" not in files
    written, problems = save_files(files_in(reply), tmp_path / "out")
    assert sorted(p.name for p in written) == ["README.md", "src"]
    assert len(problems) == 1 and problems[0].startswith("src/app.py")  # a file is in the way: said, not raised
    assert not (tmp_path / "escape.py").exists()
