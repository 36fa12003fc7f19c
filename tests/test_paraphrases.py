"""The offline model's understanding: ordinary phrasings of what every tool does.

Each case is one message as different people would type it (questions, commands, fragments,
typos, lower case) run as a whole turn through the real team: the team's selector must pick
the agent that owns the expected tool, that agent must call the tool, and a fact from the
tool's answer must reach the user. ``test_hit_rate`` reports the share of cases that work
and fails below 90%; every case is also a test of its own.

The built-in agents (assistant, guide, librarian) and the mathematician answer in the
default team; the music store's catalog and invoice specialists in the ``music-store`` team,
on its demo store (the same data on every machine). Unknown requests ("Tell me a joke")
must get one short, kind answer that says what the team can do, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from chorus.attachments import Attachment
from chorus.events import MessageEvent, ToolCallEvent, TurnEvent
from chorus.settings import Settings
from chorus.turn import ChatSession, Chorus, run_turn

ROOT = Path(__file__).resolve().parents[1]
MUSIC = "music-store"

TOOL_AGENT = {
    "current_time": "assistant", "days_between": "assistant", "remember": "assistant",
    "chorus_help": "guide", "search_knowledge": "librarian", "search_attached_files": "librarian",
    "calculate": "mathematician", "convert_units": "mathematician",
    "albums_by_artist": "catalog", "tracks_by_artist": "catalog", "tracks_by_genre": "catalog",
    "find_song": "catalog", "recommend_tracks": "catalog", "remember_music_taste": "catalog",
    "verify_customer": "invoices", "my_invoices": "invoices", "my_purchases_by_unit_price": "invoices",
    "invoice_details": "invoices", "order_track": "invoices", "my_orders": "invoices",
}
MUSIC_TOOLS = {name for name, agent in TOOL_AGENT.items() if agent in ("catalog", "invoices")}
VERIFIED = ("my customer id is 1",)  # the demo store's customer 1: Ana Souza, ana.souza@example.com
# A file the user attached earlier in the conversation, with rules unlike the knowledge base's.
POLICY = Attachment("store-policy.md", "# Store policy\n\n## Refunds\n\nRefunds are paid as store credit only, "
                    "never in cash, within 45 days of purchase.\n\n## Shipping\n\nShipping costs 7 euros on "
                    "every order, whatever its size.\n")
ATTACHED = ("Here is our store policy.",)


@dataclass(frozen=True)
class Case:
    question: str
    tools: tuple[str, ...]
    """The tool the agent must call (any of these when the question fairly asks for either)."""
    fact: str
    """Text that must appear in the reply (case-insensitive)."""
    before: tuple[str, ...] = ()
    """Earlier messages of the same conversation."""
    files: tuple[Attachment, ...] = ()
    """Attached to the first earlier message."""

    @property
    def team(self) -> str | None:
        return MUSIC if self.tools[0] in MUSIC_TOOLS else None

    @property
    def agent(self) -> str:
        return TOOL_AGENT[self.tools[0]]


def case(question: str, tool: str | tuple[str, ...], fact: str, before: tuple[str, ...] = (),
         files: tuple[Attachment, ...] = ()) -> Case:
    return Case(question, (tool,) if isinstance(tool, str) else tool, fact, before, files)


CASES: list[Case] = [
    # -- assistant: current_time --------------------------------------------------------------
    case("what's the time in london right now", "current_time", "Europe/London"),
    case("time in paris?", "current_time", "Europe/Paris"),
    case("current time in New York please", "current_time", "America/New_York"),
    case("whats the tiem in sydney", "current_time", "Australia/Sydney"),
    case("Could you tell me what time it is in Berlin?", "current_time", "Europe/Berlin"),
    case("clock in singapore", "current_time", "Asia/Singapore"),
    case("what hour is it in Dubai?", "current_time", "Asia/Dubai"),
    case("TOKYO TIME", "current_time", "Asia/Tokyo"),
    case("what's today's date?", "current_time", "UTC"),
    case("what time is it over in seattle", "current_time", "America/Los_Angeles"),
    # -- assistant: days_between --------------------------------------------------------------
    case("how many days between 2024-01-01 and 2024-12-25?", "days_between", "is 359 days"),
    case("number of days from 2025-03-01 to 2025-04-01", "days_between", "is 31 days"),
    case("days till 2030-01-01", "days_between", "Tuesday 01 January 2030"),
    case("how many days until 25 December 2030?", "days_between", "Wednesday 25 December 2030"),
    case("count the days from 1 May 2026 to 1 June 2026", "days_between", "is 31 days"),
    case("How long is it from March 3, 2027 to April 2, 2027?", "days_between", "is 30 days"),
    case("how many days since 2020-03-15?", "days_between", f"From {date(2020, 3, 15):%A %d %B %Y} to"),
    # -- assistant: remember ------------------------------------------------------------------
    case("My favourite colour is green.", "remember", "Saved to your memory"),
    case("please remember that my name is Sam", "remember", "my name is Sam"),
    case("call me Sam from now on", "remember", "Saved to your memory"),
    case("i'm vegetarian, keep that in mind", "remember", "vegetarian"),
    case("I live in Lisbon", "remember", "Lisbon"),
    case("don't forget I'm allergic to peanuts", "remember", "peanuts"),
    # -- guide: chorus_help -------------------------------------------------------------------
    case("how do i connect openai?", "chorus_help", "OPENAI_API_KEY"),
    case("how to set up a real llm", "chorus_help", "CHORUS_MODEL"),
    case("how do I make my own plugin", "chorus_help", "entry point"),
    case("how can I create a new team?", "chorus_help", "YAML"),
    case("what commands does the cli have", "chorus_help", "chorus run"),
    case("how do i stop the agents mid answer", "chorus_help", "stop button"),
    case("where can I see traces?", "chorus_help", "MLflow"),
    case("can i use ollama with this", "chorus_help", "ollama/llama3.1"),
    case("how do i cap costs per user?", "chorus_help", "CHORUS_USER_DAILY_COST_BUDGET"),
    case("how do logins work", "chorus_help", "chorus users add"),
    case("wat is chorus?", "chorus_help", "team of AI agents"),
    case("how to export a conversation", "chorus_help", "chorus export"),
    # -- librarian: search_knowledge ----------------------------------------------------------
    case("can I get my money back?", "search_knowledge", "refund"),
    # Its passage's cosine is just under the knowledge base's cut-off; the section heading ("Prices and
    # payment") sharing the question's word lifts it over (chorus.memory.knowledge.SECTION_BONUS).
    case("what payment methods do you accept", "search_knowledge", "PayPal"),
    case("do u take paypal", "search_knowledge", "PayPal"),
    case("when is support open?", "search_knowledge", "8:00"),
    case("do gift cards expire", "search_knowledge", "never expire"),
    case("whats ur return policy", "search_knowledge", "14 days"),
    case("what format are downloads in", "search_knowledge", "AAC"),
    case("do you sell vinyl?", "search_knowledge", "digital"),
    case("why was I charged twice", "search_knowledge", "authorisation"),
    case("how many times can I download a track I bought", "search_knowledge", "five times"),
    case("do you sell my personal data", "search_knowledge", "never sell"),
    case("refund policy?", "search_knowledge", "14 days"),
    # -- librarian: search_attached_files -----------------------------------------------------
    case("what does my document say about shipping?", "search_attached_files", "7 euros", ATTACHED, (POLICY,)),
    case("according to the file I sent, how are refunds paid", "search_attached_files", "store credit only",
         ATTACHED, (POLICY,)),
    case("check the attachment for the shipping cost", "search_attached_files", "7 euros", ATTACHED, (POLICY,)),
    # -- mathematician: calculate -------------------------------------------------------------
    case("whats 15 percent of 80", "calculate", "= 12"),
    case("2+2", "calculate", "= 4"),
    case("what is 7 times 8", "calculate", "= 56"),
    case("sqrt of 144", "calculate", "= 12"),
    case("calcuate 12 * (3+4)", "calculate", "= 84"),
    case("what's 2 to the power of 10", "calculate", "= 1024"),
    case("how much is 100 divided by 8", "calculate", "= 12.5"),
    case("what is three plus four", "calculate", "= 7"),
    case("add 5 and 7", "calculate", "= 12"),
    case("multiply 6 by 7", "calculate", "= 42"),
    case("subtract 3 from 10", "calculate", "= 7"),
    case("divide 20 by 4", "calculate", "= 5"),
    case("half of 250", "calculate", "= 125"),
    case("(3+4)*2?", "calculate", "= 14"),
    # -- mathematician: convert_units ---------------------------------------------------------
    case("how many pounds is 10 kg", "convert_units", "22.04"),
    case("100 fahrenheit in celsius", "convert_units", "37.7"),
    case("5 miles in km", "convert_units", "8.04"),
    case("how many cups in a gallon", "convert_units", "= 16"),
    case("what's 30 degrees celsius in fahrenheit", "convert_units", "= 86"),
    case("3 feet to meters", "convert_units", "0.9144"),
    case("convert 2 hours into minutes", "convert_units", "= 120"),
    case("6 ft in cm", "convert_units", "182.88"),
    case("convert 10 kilomters to miles", "convert_units", "6.21"),
    case("how many grams in 2 pounds", "convert_units", "907.18"),
    # -- catalog: albums_by_artist ------------------------------------------------------------
    case("got anything by Led Zeppelin?", ("albums_by_artist", "tracks_by_artist"), "*IV*"),
    case("queen albums", "albums_by_artist", "A Night at the Opera"),
    case("what records do you have from metallica", "albums_by_artist", "Master of Puppets"),
    case("list the albums of Miles Davis", "albums_by_artist", "Kind of Blue"),
    case("show me nirvana's discography", "albums_by_artist", "Nevermind"),
    case("which albums by ac/dc?", "albums_by_artist", "Let There Be Rock"),
    case("albums by led zepelin", "albums_by_artist", "Physical Graffiti"),
    case("Do you have any Coltrane albums?", "albums_by_artist", "Blue Train"),
    case("what has bob marley released", "albums_by_artist", "Exodus"),
    # -- catalog: tracks_by_artist ------------------------------------------------------------
    case("songs by queen", "tracks_by_artist", "Bohemian Rhapsody"),
    case("what tracks do you have from Metallica", "tracks_by_artist", "Battery"),
    case("list some Bob Marley songs", "tracks_by_artist", "Three Little Birds"),
    case("any music by B.B. King?", "tracks_by_artist", "Every Day I Have the Blues"),
    case("which miles davis tunes do you sell", "tracks_by_artist", "So What"),
    case("nirvana tracks", "tracks_by_artist", "Smells Like Teen Spirit"),
    # -- catalog: tracks_by_genre -------------------------------------------------------------
    case("show me some blues tracks", "tracks_by_genre", "**Blues** tracks"),
    case("any jazz songs?", "tracks_by_genre", "**Jazz** tracks"),
    case("what reggae do you have", "tracks_by_genre", "**Reggae** tracks"),
    case("rock music please", "tracks_by_genre", "**Rock** tracks"),
    case("classical tracks?", "tracks_by_genre", "Cello Suite"),
    case("do you have any bossa nova", "tracks_by_genre", "**Bossa Nova** tracks"),
    case("metal songs", "tracks_by_genre", "Master of Puppets"),
    # -- catalog: find_song -------------------------------------------------------------------
    case("Do you have Bohemian Rhapsody?", "find_song", "Yes, we have **Bohemian Rhapsody**"),
    case("is Stairway to Heaven in the store?", "find_song", "Yes, we have **Stairway to Heaven**"),
    case("looking for the track Take Five", "find_song", "Yes, we have **Take Five**"),
    case("do you sell smells like teen spirit", "find_song", "Yes, we have **Smells Like Teen Spirit**"),
    case("have you got 'So What'?", "find_song", "Yes, we have **So What**"),
    case("can I buy Kashmir?", "find_song", "Yes, we have **Kashmir**"),
    case("stairway to heaven?", "find_song", "Yes, we have **Stairway to Heaven**"),
    case("is there a song called Wave", "find_song", "Yes, we have **Wave**"),
    # -- catalog: recommend_tracks ------------------------------------------------------------
    case("recommend some jazz", "recommend_tracks", "Some **Jazz** tracks you might like"),
    case("what should I listen to?", "recommend_tracks", "best sellers"),
    case("suggest something like Queen", "recommend_tracks", "If you like **Queen**"),
    case("any recommendations for rock?", "recommend_tracks", "**Rock**"),
    case("can you reccomend me some metal", "recommend_tracks", "**Metal**"),
    case("give me some music suggestions", "recommend_tracks", "best sellers"),
    case("i need new music, any ideas?", "recommend_tracks", "best sellers"),
    # -- catalog: remember_music_taste --------------------------------------------------------
    case("i'm really into bossa nova", "remember_music_taste", "you like Bossa Nova"),
    case("my favourite band is Queen", "remember_music_taste", "you like Queen"),
    case("big fan of Miles Davis", "remember_music_taste", "you like Miles Davis"),
    case("I like metal and Nirvana", "remember_music_taste", "Nirvana"),
    case("i adore john coltrane", "remember_music_taste", "you like John Coltrane"),
    case("love reggae", "remember_music_taste", "you like Reggae"),
    # -- invoices: verify_customer ------------------------------------------------------------
    case("my email is ana.souza@example.com", "verify_customer", "verified as customer 1"),
    case("i am customer 1", "verify_customer", "verified as customer 1"),
    case("customer id: 1", "verify_customer", "verified as customer 1"),
    case("Here's my phone number: +1 555 0101-2357", "verify_customer", "verified as customer 1"),
    case("sure, it's ana.souza@example.com", "verify_customer", "Your invoices", before=("show my invoices",)),
    case("1", "verify_customer", "| 5 | 2024-05-22 | 1 | $0.99 |", before=("how much did I spend last time?",)),
    # -- invoices: my_invoices ----------------------------------------------------------------
    case("how much did I spend last time?", "my_invoices", "| 5 | 2024-05-22 | 1 | $0.99 |", VERIFIED),
    case("show me my past orders", "my_invoices", "Your invoices", VERIFIED),
    case("what did i buy", "my_invoices", "Your invoices", VERIFIED),
    case("list my purchases", "my_invoices", "Your invoices", VERIFIED),
    case("my invoices pls", "my_invoices", "Your invoices", VERIFIED),
    case("order history?", "my_invoices", "Your invoices", VERIFIED),
    case("my oldest invoice", "my_invoices", "oldest first", VERIFIED),
    case("show my recipts", "my_invoices", "Your invoices", VERIFIED),
    case("what have I paid so far", "my_invoices", "Your invoices", VERIFIED),
    case("who helped me with my last order?", "invoice_details", "Invoice **5** of 2024-05-22", VERIFIED),
    case("what was on my most recent invoice?", "invoice_details", "Hell Ain't A Bad Place To Be", VERIFIED),
    # -- invoices: my_purchases_by_unit_price -------------------------------------------------
    case("what's the most expensive thing I bought?", "my_purchases_by_unit_price", "In My Time of Dying",
         VERIFIED),
    case("which tracks did I pay the most for", "my_purchases_by_unit_price", "highest unit price first",
         VERIFIED),
    case("my purchases ordered by price", "my_purchases_by_unit_price", "highest unit price first", VERIFIED),
    case("show what I bought, priciest first", "my_purchases_by_unit_price", "highest unit price first",
         VERIFIED),
    # -- invoices: invoice_details ------------------------------------------------------------
    case("who took care of invoice 4", "invoice_details", "Elif Yilmaz", VERIFIED),
    case("details for invoice #3", "invoice_details", "Invoice **3**", VERIFIED),
    case("what was on invoice 2?", "invoice_details", "Invoice **2**", VERIFIED),
    case("invoice 5 please", "invoice_details", "Elif Yilmaz", VERIFIED),
    # -- invoices: order_track (needs approval, which a turn without a page cannot ask: refused) ---------
    case("Buy the song Black Dog", "order_track", 'order_track(title="Black Dog") needs the user\'s approval',
         VERIFIED),
    case("i'd like to purchase the track Black Dog please", "order_track", 'order_track(title="Black Dog")',
         VERIFIED),
    case("can you order the song Stairway To Heaven for me", "order_track", "Stairway To Heaven", VERIFIED),
    # -- invoices: my_orders ------------------------------------------------------------------
    case("what did I order?", "my_orders", "not ordered anything here yet", VERIFIED),
    case("show the orders I placed", "my_orders", "not ordered anything here yet", VERIFIED),
]


@pytest.fixture(scope="module")
def chorus_(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chorus]:
    """The default plugins, the mathematician and the music store (its demo store), with memory
    and the knowledge base in knowledge/, all on the offline model."""
    home = tmp_path_factory.mktemp("paraphrase-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CHORUS_MUSIC_STORE_URL", raising=False)  # the demo store: the same on every machine
        settings = Settings(home=home, model="offline", offline_token_delay=0, tracing=False,
                            forbid_real_models=True, agents_dir=ROOT / "agents",
                            knowledge_dir=ROOT / "knowledge",
                            plugins="assistant,guide,librarian,chorus-mathematician,chorus-music-store")
        loaded = Chorus.load(settings)
        assert loaded.memory is not None
        loaded.memory.prepare_sync()
        assert loaded.memory.problem is None
        try:
            yield loaded
        finally:
            loaded.memory.close()


async def turn(session: ChatSession, text: str, files: tuple[Attachment, ...] = ()) -> list[TurnEvent]:
    return [event async for event in run_turn(session, text, attachments=files)]


_results: dict[int, str | None] = {}
"""Each case's outcome once run: None when it worked, else what went wrong."""


async def outcome(chorus: Chorus, index: int) -> str | None:
    """None when the case works as a user expects, else what they saw instead."""
    if index in _results:
        return _results[index]
    item = CASES[index]
    session = chorus.open_session(item.team, user_id=f"paraphrase-{index}")
    for number, earlier in enumerate(item.before):
        await turn(session, earlier, item.files if number == 0 else ())
    events = await turn(session, item.question)
    calls = [(e.agent, e.name) for e in events if isinstance(e, ToolCallEvent)]
    replies = [(e.agent, e.content) for e in events if isinstance(e, MessageEvent)]
    problem: str | None = None
    if not replies:
        problem = "no reply"
    elif replies[-1][0] != item.agent:
        problem = f"answered by {replies[-1][0]}, not {item.agent}"
    elif not any(agent == item.agent and name in item.tools for agent, name in calls):
        problem = f"tool calls {calls}, not {item.tools}"
    elif item.fact.lower() not in replies[-1][1].lower():
        problem = f"the reply lacks {item.fact!r}"
    if problem is not None:
        shown = replies[-1][1][:300] if replies else ""
        problem = f"{item.question!r}: {problem}. Reply: {shown!r}"
    _results[index] = problem
    return problem


RETRIEVAL_MISSES: set[str] = set()  # questions the knowledge search, not the offline model, would miss


def _param(index: int) -> object:
    item = CASES[index]
    if item.question in RETRIEVAL_MISSES:
        return pytest.param(index, id=item.question[:40], marks=pytest.mark.xfail(
            strict=True, reason="the knowledge base's search, not the offline model, misses it"))
    return pytest.param(index, id=item.question[:40])


@pytest.mark.parametrize("index", [_param(i) for i in range(len(CASES))])
async def test_paraphrase(chorus_: Chorus, index: int) -> None:
    problem = await outcome(chorus_, index)
    assert problem is None, problem


async def test_hit_rate(chorus_: Chorus, capsys: pytest.CaptureFixture[str]) -> None:
    problems = [p for i in range(len(CASES)) if (p := await outcome(chorus_, i)) is not None]
    rate = 1 - len(problems) / len(CASES)
    with capsys.disabled():
        print(f"\noffline model paraphrase hit rate: {rate:.1%} ({len(CASES) - len(problems)}/{len(CASES)})")
        for problem in problems:
            print(f"  miss: {problem}")
    assert rate >= 0.90, f"hit rate {rate:.1%} is below 90%"


def test_the_suite_covers_every_tool_of_the_built_in_agents_and_both_plugins(chorus_: Chorus) -> None:
    owned = {tool for agent in ("assistant", "guide", "librarian", "mathematician", "catalog", "invoices")
             for tool in chorus_.registry.agents[agent].tools}
    covered = {tool for c in CASES for tool in c.tools}
    assert owned == set(TOOL_AGENT) and owned <= covered
    assert len(CASES) >= 80


# -- what no tool covers -----------------------------------------------------------------------------

UNKNOWN = ["Tell me a joke", "write me a poem", "what's the weather like in Paris?", "who won the world cup?",
           "can you sing?"]


@pytest.mark.parametrize("team", [None, MUSIC], ids=["default team", "music store"])
@pytest.mark.parametrize("question", UNKNOWN)
async def test_an_unknown_request_gets_one_short_kind_answer(chorus_: Chorus, team: str | None,
                                                             question: str) -> None:
    session = chorus_.open_session(team, user_id="someone")
    events = await turn(session, question)
    replies = [e for e in events if isinstance(e, MessageEvent)]
    assert len(replies) == 1 and not any(isinstance(e, ToolCallEvent) for e in events)
    text = replies[0].content
    assert text.startswith("Sorry, I can't answer that one") and text.count("offline model") == 1
    assert session.built is not None
    for member in session.built.members:
        # Each member is offered once, with something to try, and no description is recited.
        assert text.count(f"**{member.name}**") == 1, text
        assert member.description.rstrip(".") not in text, text
    assert text.count("Here is what") == 1 and len(text) < 800, text


@pytest.mark.parametrize("team", [None, MUSIC], ids=["default team", "music store"])
@pytest.mark.parametrize("question", ["What can you do?", "hello", "help"])
async def test_what_can_you_do_introduces_the_team_once(chorus_: Chorus, team: str | None, question: str) -> None:
    session = chorus_.open_session(team, user_id="someone")
    events = await turn(session, question)
    replies = [e for e in events if isinstance(e, MessageEvent)]
    assert len(replies) == 1
    text = replies[0].content
    assert text.count("Here is what this team can do") == 1
    assert session.built is not None
    for member in session.built.members:
        assert text.count(member.description.rstrip(".")) == 1, text
        assert text.count(f"**{member.name}**") == 1, text


async def test_a_round_robin_team_introduces_itself_once(chorus_: Chorus) -> None:
    events = await turn(chorus_.open_session("panel", user_id="someone"), "Hello panel, who are you?")
    replies = [(e.agent, e.content) for e in events if isinstance(e, MessageEvent)]
    assert [agent for agent, _ in replies] == ["assistant", "guide"]
    both = "\n".join(text for _, text in replies)
    assert both.count("Here is what this team can do") == 1
    for name in ("assistant", "guide"):
        assert both.count(chorus_.registry.agents[name].description.rstrip(".")) == 1, both
