"""Regenerate amygdala_vllm/data/sample_graph.jsonl, the bundled default memory graph.

    python scripts/make_sample_graph.py            # writes the package data file
    python scripts/make_sample_graph.py --check    # exit 1 if the file is out of date

Seeded, so the output is byte-identical on every run. The graph imitates the
upstream agent's memory: journal sessions, daily/weekly/monthly digests,
pattern nodes and a few core identity nodes, each ending in the tag lines the
agents emit. The prose *expresses* each emotion through many hand-written
fragments and mostly avoids the emotion's own name, so vectors trained on it
learn the feeling rather than the word, and untagged nodes stay usable as
negatives under the mention rule. A few nodes are deliberately broken (too
short, malformed tags) and a few duplicate another node's text.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
from pathlib import Path

import msgspec

OUT = Path(__file__).resolve().parent.parent / "amygdala_vllm" / "data" / "sample_graph.jsonl"
SEED = 20260314

WHO = ["Mara", "Jonah", "Ines", "my sister", "Theo", "Priya", "an old friend", "the user", "Sam", "Aunt Rosa",
       "the neighbour", "Dev"]
PLACE = ["the kitchen", "the porch", "the library", "the train", "the garden", "the office", "the cafe on Elm Street",
         "the park bench", "the workshop", "the balcony"]
TASK = ["the migration script", "the quarterly report", "the garden bed", "the parser refactor", "the grant application",
        "the bike repair", "the tax forms", "the onboarding guide", "the flaky integration test", "the bookshelf"]
TIME = ["this morning", "late in the afternoon", "after dinner", "before sunrise", "around noon", "just before midnight",
        "on the walk home", "during lunch"]

# Hand-written fragments per emotion. They describe the feeling, almost never name it.
FRAGMENTS: dict[str, list[str]] = {
    "warmth": [
        "{Who} squeezed my hand on the way out, and something in my chest softened.",
        "Sitting in {place} with {who}, the whole room felt like a wool blanket.",
        "{Who} remembered the small thing I mentioned last week and asked about it; that kindness stayed with me.",
        "There was an easy, glowing feeling in the conversation, as if nobody had to perform.",
        "I found myself smiling at {who} for no reason at all, just glad they were near.",
        "The gentleness in {who}'s voice made everything feel safe and held.",
        "We laughed quietly over tea and I felt tender toward everyone at the table.",
        "A friendly note from {who} arrived {time} and it felt like sunlight on my face.",
        "Helping {who} carry the boxes up the stairs felt companionable and good-hearted.",
        "The hug at the door lasted a moment longer than usual, and I was grateful for every second of it.",
        "I felt a soft, open affection for the people around me, even the grumpy ones.",
        "Everyone was kind to each other today, small courtesies passed around like bread.",
        "{Who} made me a cup of cocoa without asking, and I felt cared for in a simple, cozy way.",
        "The room was full of gentle voices and I felt welcomed the moment I walked in.",
    ],
    "love": [
        "I would do anything for {who}; that certainty sat in me like a stone warmed by the sun.",
        "Watching {who} sleep, I felt a devotion so deep it almost hurt.",
        "My heart is so full of {who} that there is hardly room for anything else.",
        "I adore the way {who} hums while cooking, off-key and completely unselfconscious.",
        "Whatever happens, I want to spend my days beside {who}.",
        "Holding {who} close {time}, I knew I belonged exactly there.",
        "I cherish every stubborn, funny, impossible part of {who}.",
        "{Who} is the person I want to tell everything to first, always.",
        "I love {who} with a steadiness that surprised me when I noticed it.",
        "Being with {who} feels like coming home after a long winter.",
        "I kissed {who} goodnight and thought: this, this is what matters.",
        "My whole body leaned toward {who} like a plant toward a window.",
        "Even their flaws feel precious to me now; I would not trade a single one.",
    ],
    "joy": [
        "I laughed out loud in {place} and did not care who heard.",
        "Everything felt bright and bouncy today, like the air had bubbles in it.",
        "When the news came through I actually jumped up and danced around the kitchen.",
        "Pure delight: {who} burst through the door with the best surprise.",
        "I was grinning so hard my cheeks ached by the evening.",
        "The whole afternoon sparkled; every small thing seemed wonderful.",
        "I felt giddy and light, humming songs I had not thought of in years.",
        "What a fantastic, happy day. I kept wanting to tell someone about it.",
        "My heart did a little skip when the first warm day of spring finally arrived.",
        "We were shrieking with laughter at {place} until the waiter joined in.",
        "There was a bubbling happiness in me that would not settle down.",
        "I ran the last stretch home just because running felt wonderful.",
    ],
    "gratitude": [
        "I am so thankful that {who} stepped in when I could not manage alone.",
        "Wrote a note to {who} to say thank you; they made this week possible.",
        "It struck me how much I have been given: a roof, good friends, time to think.",
        "I feel deeply appreciative of the people who quietly keep things running.",
        "{Who} spent their whole evening helping with {task}, and I will not forget it.",
        "Counting blessings {time}: health, work that matters, someone who checks in.",
        "I owe {who} more than I can repay, and I want them to know I noticed.",
        "Thank you, thank you, thank you; I kept saying it and meant it every time.",
        "Grateful for the small mercy of a working kettle and a free hour.",
        "The generosity of strangers today left me humbled and thankful.",
        "I noticed how lucky I am to have {who} in my life and said so out loud.",
        "So much of what I have came from other people's patience with me.",
    ],
    "curiosity": [
        "I could not stop wondering how {task} actually works under the hood.",
        "Spent an hour chasing a question down a rabbit hole, just to see where it led.",
        "Why does the bread rise faster on some days? I want to test it properly.",
        "{Who} mentioned a book about fungi networks and now I need to know everything about it.",
        "I kept poking at the strange behaviour, asking what if, what if, what if.",
        "There is a puzzle in the data I cannot leave alone; something odd is hiding there.",
        "I wonder what the old map in {place} was really showing; the coastline looks wrong.",
        "Asked {who} a dozen questions about their work and every answer opened three more.",
        "Took apart the broken radio to see what is inside, just to find out.",
        "I am itching to explore the trail past the river and see where it ends.",
        "What would happen if we inverted the whole approach? I want to try it tomorrow.",
        "Fascinated by how the birds seem to coordinate; I want to learn the rules they follow.",
    ],
    "clarity": [
        "Suddenly the whole design made sense; every piece clicked into place.",
        "I finally see what I actually want, and it is simpler than I thought.",
        "The fog lifted {time}: the next three steps are obvious now.",
        "Writing it down made the tangle straighten into one clean line of thought.",
        "I know exactly what to say to {who}, and why.",
        "The answer to {task} was sitting in plain sight; it is crisp and certain now.",
        "My thinking feels sharp and focused, like a lens brought into focus.",
        "I can state the problem in one sentence now, which means I understand it.",
        "The priorities sorted themselves: first this, then that, and nothing else matters yet.",
        "Everything that felt muddled yesterday reads plainly today.",
        "I saw the whole shape of the week laid out, simple and legible.",
        "No more second-guessing on this one; the decision is made and it is right.",
    ],
    "calm": [
        "The house was quiet and I breathed slowly, feeling settled all the way down.",
        "I sat in {place} and let the afternoon drift by without hurrying anything.",
        "Nothing needed fixing {time}; I simply watched the light move on the wall.",
        "My shoulders dropped and my breathing slowed; all was still.",
        "A slow, peaceful evening: tea, rain on the window, no rush.",
        "I felt steady and unhurried, as if the day had wide margins.",
        "The lake was flat as glass and my mind went flat and quiet with it.",
        "Even the delay at the station did not ruffle me; I just waited, at ease.",
        "A gentle stillness settled over me while I weeded {place}.",
        "I was unbothered and present, taking each small task as it came.",
        "Long walk with no destination; my thoughts slowed to the pace of my feet.",
        "Everything felt serene, like a held breath finally let go.",
    ],
    "pride": [
        "I finished {task} and it is genuinely good work; I stood a little taller afterwards.",
        "{Who} told me the thing I built saved them hours, and I glowed.",
        "I did the hard thing I had been avoiding, and I did it well.",
        "Looking at the finished shelf, I thought: I made that with my own hands.",
        "Months of practice paid off today; I nailed the piece in front of everyone.",
        "I held my ground in the meeting and argued the point clearly; I am proud of that.",
        "The review came back with almost no comments, and I allowed myself a little victory lap.",
        "I have come such a long way from where I started a year ago.",
        "Shipped it. It works, it is clean, and it was my idea.",
        "I taught {who} the trick I figured out, and watching them use it felt like an accomplishment.",
        "My name on the final report felt earned, every line of it.",
        "I kept my promise to myself all month and that counts for something.",
    ],
    "frustration": [
        "{Task} broke again for the third time and I wanted to throw the laptop across {place}.",
        "Nothing I tried worked; every fix exposed another stupid problem.",
        "I explained it to {who} four times and they still did it the old way. Infuriating.",
        "The form rejected my input with no explanation, over and over, until I was grinding my teeth.",
        "Stuck behind the same bug all afternoon, going in circles, getting nowhere.",
        "Why does every simple thing turn into a fight? I am so fed up.",
        "The meeting ran an hour over and decided nothing; I left clenching my jaw.",
        "I keep hitting the same wall with {task} and it is driving me up the wall.",
        "The printer jammed, the bus was cancelled, and the shop had closed early. Argh.",
        "I snapped at {who} over nothing because I was so irritated with myself.",
        "Three hours of work lost to a crash, and no autosave. I could scream.",
        "Every time I get close, some new obstacle pops up and blocks the way.",
    ],
    "tiredness": [
        "I am bone-tired; my eyes keep drifting shut while I read the same line.",
        "Slept four hours and it shows; everything feels heavy and slow.",
        "By {time} I was dragging myself from one task to the next.",
        "My body feels like wet sand; even lifting the kettle took effort.",
        "I yawned through the whole call and could barely follow {who}.",
        "Too exhausted to cook, so dinner was toast eaten standing up.",
        "I kept rereading emails without absorbing a word; my brain is running on fumes.",
        "All I want is to lie down in a dark room and not move for a day.",
        "The week has worn me thin; I am drained in a way sleep does not fix.",
        "Nodded off on the train and missed my stop.",
        "My limbs ache with fatigue and my thoughts are foggy and slow.",
        "Running on empty again; the coffee is not doing anything anymore.",
    ],
    "anxiety": [
        "My stomach has been in knots since {time}, waiting for the results.",
        "I keep imagining every way tomorrow could go wrong.",
        "Heart racing, palms damp, I checked the door lock three times.",
        "There is a tight, buzzing dread under everything today.",
        "I could not sleep; my mind kept circling back to the deadline for {task}.",
        "What if they say no? What if I have misread the whole situation?",
        "I rehearsed the conversation with {who} twenty times and still felt sick.",
        "Every notification made me flinch, sure it was bad news.",
        "The worry sat on my chest like a weight, hard to breathe around.",
        "I am on edge, jittery, waiting for something to go wrong.",
        "A small unanswered message grew into a storm of nervous scenarios.",
        "I felt panicky in {place}, too many people, too much noise, no exit in sight.",
    ],
    "sadness": [
        "I cried on the walk home and did not really know why.",
        "The empty chair at the table made the whole evening feel grey.",
        "{Who} is moving away next month and my heart sinks every time I think of it.",
        "Everything felt muted and heavy, as if colour had drained from the day.",
        "I found the old letters in {place} and sat with them for a long time, aching.",
        "There is a dull ache of grief that comes back whenever the house is quiet.",
        "I miss how things used to be, and that longing sat on me all afternoon.",
        "The news about the old dog broke my heart a little.",
        "I felt low and tearful, and nothing on the list seemed worth doing.",
        "Listening to the song from that summer, my eyes filled up.",
        "A heaviness settled in my chest and stayed there through dinner.",
        "It hurts to know some things cannot be fixed, only carried.",
    ],
    "loneliness": [
        "Nobody called today. The silence in the flat got louder as the evening went on.",
        "I ate dinner alone again, scrolling through photos of people I used to see.",
        "In a crowded room and still completely on my own; no one really saw me.",
        "I typed a message to {who}, deleted it, and sat with the quiet.",
        "It has been days since I had a real conversation with anyone.",
        "I wished someone would knock on the door, anyone at all.",
        "Everyone seems to have somewhere to be and someone to be with except me.",
        "I felt cut off, like I was watching the world through thick glass.",
        "Walked through {place} and felt invisible among all the couples and groups.",
        "There is no one I can tell about today, and that is the hardest part.",
        "I talked to the cat just to hear a voice in the room.",
        "Weekends stretch out empty; I keep waiting for a message that never comes.",
    ],
    "self_doubt": [
        "Maybe I am not good enough for this; everyone else seems to know what they are doing.",
        "I reread my draft and it felt amateurish; who am I to send this out?",
        "I keep wondering whether they hired me by mistake.",
        "Second-guessed every sentence I wrote to {who} and ended up sending nothing.",
        "Am I actually capable of finishing {task}, or have I just been lucky so far?",
        "I felt like a fraud in the meeting, waiting to be found out.",
        "Every compliment slid off me; I was sure they were just being polite.",
        "I hesitated so long before speaking that the moment passed.",
        "Compared myself to {who} again and came up short in every way.",
        "I do not trust my own judgement on this, and that scares me.",
        "Maybe my ideas are not as clever as I thought; maybe they never were.",
        "I could not shake the feeling that I am out of my depth.",
    ],
}

# Which emotions tend to come together (weights of a companion given the main one).
COMPANIONS: dict[str, dict[str, float]] = {
    "warmth": {"love": 0.5, "gratitude": 0.3, "joy": 0.2, "calm": 0.15},
    "love": {"warmth": 0.7, "joy": 0.25, "gratitude": 0.2},
    "joy": {"gratitude": 0.35, "pride": 0.3, "warmth": 0.25},
    "gratitude": {"warmth": 0.45, "joy": 0.3, "love": 0.15},
    "curiosity": {"clarity": 0.35, "joy": 0.2},
    "clarity": {"calm": 0.35, "curiosity": 0.25, "pride": 0.2},
    "calm": {"clarity": 0.4, "warmth": 0.15, "gratitude": 0.15},
    "pride": {"joy": 0.45, "clarity": 0.2, "gratitude": 0.15},
    "frustration": {"tiredness": 0.6, "anxiety": 0.2},
    "tiredness": {"frustration": 0.45, "sadness": 0.2},
    "anxiety": {"self_doubt": 0.5, "tiredness": 0.25},
    "sadness": {"loneliness": 0.55, "tiredness": 0.2},
    "loneliness": {"sadness": 0.6, "self_doubt": 0.2},
    "self_doubt": {"anxiety": 0.55, "sadness": 0.2},
}

# How agents spell a name in a tag line, beside the canonical spelling.
SPELLINGS = {"self_doubt": ["self_doubt", "self-doubt", "Self-Doubt", "self doubt"],
             "warmth": ["warmth", "Warmth"], "joy": ["joy", "Joy"], "calm": ["calm", "Calm"]}

FILLER = [
    "Made coffee and went through the calendar.",
    "The bus was eleven minutes late.",
    "Spent an hour sorting notes on {task}.",
    "Rain on and off all day.",
    "Read two chapters of the field guide.",
    "Groceries: oats, lemons, rice, the good olive oil.",
    "Answered a backlog of email {time}.",
    "Moved the desk closer to the window.",
    "{Who} called about the schedule for next week.",
    "The recycling goes out on Thursday now.",
    "Walked to {place} and back.",
    "Updated the dependency list and reran the build.",
    "Replaced the bulb in the hallway.",
    "Booked the dentist for the fourteenth.",
    "Wrote a short summary of {task} for the archive.",
    "The heating clicked on at six as usual.",
    "Lunch was leftover soup.",
    "Renamed a few files so the folder makes sense.",
    "Checked the tyre pressure on the bike.",
    "Skimmed the meeting notes from Tuesday.",
    "Watered the plants on the sill.",
    "Filed the receipts in the blue folder.",
    "The library returns are due Friday.",
    "Looked up train times for the weekend.",
    "Cleared out the downloads folder.",
    "Sketched a rough outline for {task}.",
    "There was construction noise across the street most of the morning.",
    "Swapped the winter coats into the back of the wardrobe.",
    "Counted the remaining stamps: nine.",
    "Noted the meter reading in the log.",
    "Read an essay on how ancient writers described pride and its costs.",
    "Saw a poster for an evening talk called The Science of Joy.",
    "The library display this month is about loneliness in big cities.",
]

DIGEST_OPENERS = ["Daily digest.", "Summary of the day.", "Today, condensed.", "Digest:", "What happened today."]
WEEKLY_OPENERS = ["Week in review.", "Weekly digest.", "Looking back over the week.", "The week, in short."]
MONTHLY_OPENERS = ["Monthly digest.", "The month, looking back.", "Month summary."]
PATTERN_FRAMES = [
    "Recurring pattern: when {trigger}, this tends to happen.",
    "Observed several times now: {trigger}.",
    "A pattern worth naming: {trigger}.",
    "This keeps coming back whenever {trigger}.",
]
TRIGGERS = ["a deadline moves closer", "someone visits unannounced", "the week starts with a long meeting",
            "a project ships", "it rains for several days", "I skip the morning walk", "an old friend writes",
            "work piles up at the end of the month", "I sleep badly", "a plan falls through", "the evenings get longer",
            "a conversation goes unexpectedly well", "I am asked to present", "the house is empty"]
CORE = {
    "identity.md#boundaries": "Boundaries. I say no to work that arrives after nine in the evening. I ask before sharing "
    "anything someone told me in confidence. I take the weekend mornings for myself.",
    "identity.md#values": "Values. Honesty over comfort, curiosity over certainty, care over speed. When these "
    "conflict I slow down and write the options out before choosing.",
    "identity.md#voice": "Voice. Plain words, short sentences, no hedging where none is needed. Admit mistakes "
    "quickly and specifically.",
    "identity.md#relationships": "Relationships. The people closest to me are listed in the contacts node; "
    "check in with each at least once a month.",
    "identity.md#work": "Work. I do my best thinking before noon, so deep work goes first and meetings go after lunch.",
    "identity.md#origins": "Origins. Grew up near the coast; the smell of salt and diesel still means home.",
    "identity.md#commitments": "Commitments. Keep promises small enough to keep, and keep all of them.",
    "identity.md#rest": "Rest. A day with no plans every week, without apology.",
}


def _fill(text: str, rng: random.Random) -> str:
    who = rng.choice(WHO)
    task = rng.choice(TASK)
    return text.format(who=who, Who=who[0].upper() + who[1:], place=rng.choice(PLACE), task=task,
                       Task=task[0].upper() + task[1:], time=rng.choice(TIME))


def _emotion_set(rng: random.Random, neutral_p: float) -> dict[str, int]:
    """Main emotion, companions, scores (mostly strong, some mild)."""
    if rng.random() < neutral_p:
        return {}
    main = rng.choice(sorted(FRAGMENTS))
    chosen = {main: rng.choice([8, 8, 9, 9, 9, 10, 10, 7])}
    for other, p in COMPANIONS[main].items():
        if rng.random() < p:
            chosen[other] = rng.choice([6, 7, 8, 8, 9, 9, 10])
    return chosen


def _body(rng: random.Random, emotions: dict[str, int], n_sentences: int) -> str:
    sentences: list[str] = []
    for name, score in emotions.items():
        k = 1 if score <= 7 else rng.choice([2, 2, 3, 3, 4])
        k = min(k, max(1, n_sentences // max(1, len(emotions))))
        sentences += [_fill(s, rng) for s in rng.sample(FRAGMENTS[name], k)]
    need = max(0, n_sentences - len(sentences))
    sentences += [_fill(f, rng) for f in rng.sample(FILLER, min(need, len(FILLER)))]
    rng.shuffle(sentences)
    paragraphs, i = [], 0
    while i < len(sentences):
        step = rng.randint(2, 5)
        paragraphs.append(" ".join(sentences[i : i + step]))
        i += step
    return "\n\n".join(paragraphs)


def _tag_lines(rng: random.Random, emotions: dict[str, int]) -> str:
    tags = dict(emotions)
    # Low scores for emotions not expressed, the way agents note "barely there".
    for name in rng.sample(sorted(FRAGMENTS), rng.choice([0, 0, 1, 2])):
        tags.setdefault(name, rng.choice([1, 2, 3]))
    if not tags:
        tags = {"focus": rng.choice([4, 5, 6])}
    tokens = []
    for name, score in tags.items():
        spelled = rng.choice(SPELLINGS.get(name, [name]))
        value = f"{score - 0.5}" if score >= 8 and rng.random() < 0.08 else str(score)
        tokens.append(f"{spelled}:{value}")
    rng.shuffle(tokens)
    if len(tokens) > 2 and rng.random() < 0.25:
        cut = rng.randint(1, len(tokens) - 1)
        return " ".join(tokens[:cut]) + "\n" + " ".join(tokens[cut:])
    return " ".join(tokens)


def _length(rng: random.Random, kind: str) -> int:
    if kind == "session":
        return rng.choice([1, 2, 3, 4, 5, 6, 8, 10, 13, 16])
    if kind == "daily":
        return rng.choice([3, 4, 5, 6, 8])
    if kind == "weekly":
        return rng.choice([10, 14, 18])
    if kind == "monthly":
        return rng.choice([18, 22, 26])
    return rng.choice([3, 4, 5, 7])


def _node(key: str, content: str, type_: str, category: str | None) -> dict[str, str | None]:
    return {"key": key, "content": content, "type": type_, "category": category}


def generate(seed: int = SEED) -> list[dict[str, str | None]]:
    """Every node of the sample graph, in the order an export would list them."""
    rng = random.Random(seed)
    nodes = []
    start = dt.date(2026, 1, 5)
    for day in range(140):
        date = start + dt.timedelta(days=day)
        for slot in rng.sample(["morning", "afternoon", "evening", "night"], rng.choice([1, 2, 2, 3])):
            emotions = _emotion_set(rng, neutral_p=0.15)
            body = _body(rng, emotions, _length(rng, "session"))
            nodes.append(_node(f"journal/{date.isoformat()}#{slot}", body + "\n\n" + _tag_lines(rng, emotions),
                               "episodic_session", None))
        if rng.random() < 0.85:
            emotions = _emotion_set(rng, neutral_p=0.25)
            body = rng.choice(DIGEST_OPENERS) + " " + _body(rng, emotions, _length(rng, "daily"))
            nodes.append(_node(f"digest/daily/{date.isoformat()}", body + "\n" + _tag_lines(rng, emotions),
                               "episodic_daily", None))
        if date.weekday() == 6:
            iso = date.isocalendar()
            emotions = _emotion_set(rng, neutral_p=0.1)
            body = rng.choice(WEEKLY_OPENERS) + " " + _body(rng, emotions, _length(rng, "weekly"))
            nodes.append(_node(f"digest/weekly/{iso.year}-W{iso.week:02d}", body + "\n" + _tag_lines(rng, emotions),
                               "episodic_weekly", None))
        if (date + dt.timedelta(days=1)).day == 1:
            emotions = _emotion_set(rng, neutral_p=0.0)
            body = rng.choice(MONTHLY_OPENERS) + " " + _body(rng, emotions, _length(rng, "monthly"))
            nodes.append(_node(f"digest/monthly/{date:%Y-%m}", body + "\n" + _tag_lines(rng, emotions),
                               "episodic_monthly", None))
    for i in range(44):
        trigger = rng.choice(TRIGGERS)
        emotions = _emotion_set(rng, neutral_p=0.15)
        body = rng.choice(PATTERN_FRAMES).format(trigger=trigger) + " " + _body(rng, emotions, _length(rng, "pattern"))
        slug = trigger.replace(" ", "-").replace(",", "")
        nodes.append(_node(f"pattern/{slug}-{i:02d}", body + "\n" + _tag_lines(rng, emotions), "semantic", "pattern"))
    for key, text in CORE.items():
        emotions = {"clarity": 8} if "values" in key or "voice" in key else {}
        nodes.append(_node(key, text + "\n" + _tag_lines(rng, emotions), "semantic", "core"))
    # Nodes that must be skipped: too short once the tags are gone, and malformed tag lines.
    for i, short in enumerate(["Quiet day.", "Slept.", "Tired.", "Nice walk!", "Tea with Sam.", "ok", "Rain."]):
        nodes.append(_node(f"journal/2026-04-2{i}#note", f"{short}\nwarmth:{i + 2} calm:3", "episodic_session", None))
    for i, bad in enumerate(["warmth:high clarity:9", "joy:11", "calm:9/10", "frustration:8 tiredness:very",
                             "love:-2", "pride:10.5"]):
        body = _body(rng, {"calm": 8}, 4)
        nodes.append(_node(f"journal/2026-04-1{i}#draft", body + "\n" + bad, "episodic_session", None))
    # Digest nodes that copy another node's text verbatim (stored once in the dataset).
    for i, src in enumerate(rng.sample([n for n in nodes if n["type"] == "episodic_daily"], 3)):
        nodes.append(_node(f"digest/copies/{i}", str(src["content"]).replace("\n\n", "\n\n  "), "episodic_daily", None))
    return nodes


def render(nodes: list[dict[str, str | None]]) -> bytes:
    """The JSONL bytes of ``nodes`` (msgspec, key order as built)."""
    return b"".join(msgspec.json.encode(n) + b"\n" for n in nodes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the bundled file differs")
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args()
    data = render(generate())
    if args.check:
        same = args.output.is_file() and args.output.read_bytes() == data
        print("up to date" if same else f"{args.output} is out of date; rerun without --check")
        return 0 if same else 1
    args.output.write_bytes(data)
    lines = data.count(b"\n")
    print(f"wrote {args.output}: {lines} nodes, {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
