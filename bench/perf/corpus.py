"""Realistic facts and questions about people, generated from a seed: what a memory of users holds (home,
work, family, pets, tastes, health, plans, past events), in the short atomic sentences extraction writes."""

from __future__ import annotations

import random

NAMES = (
    "Ana Ben Chloe Dev Elena Farid Grace Hiro Ines Jonas Kofi Lena Mateo Nadia Omar Priya Quinn Rosa Sami "
    "Tara Umar Vera Wen Xavier Yara Zane Aiko Bruno Carmen Dmitri Esme Felix Gita Hugo Isla Jamal Kira Luca "
    "Maya Nico Olga Pablo Rhea Soren Talia Uma Viktor Willa Yusuf Zoe"
).split()
CITIES = (
    "Denver Lisbon Oslo Austin Kyoto Nairobi Porto Montreal Seattle Berlin Madrid Dublin Seoul Lyon Boston "
    "Chicago Toronto Melbourne Bristol Krakow Valencia Utrecht Bergen Lagos Lima Hanoi Taipei Zurich Vienna "
    "Prague Athens Naples Cork Leeds Malmo Graz Tartu Bilbao Turin Ghent"
).split()
JOBS = (
    "nurse, designer, teacher, software engineer, accountant, chef, architect, pharmacist, electrician, "
    "photographer, lawyer, data analyst, carpenter, veterinarian, pilot, journalist, librarian, "
    "physiotherapist, product manager, translator"
).split(", ")
COMPANIES = (
    "Apple Google Siemens Spotify Airbus Novartis IKEA Shopify Atlassian Canva Mozilla Philips Lego Zalando "
    "Ubisoft Deezer Klarna Unilever Nestle Vestas"
).split()
HOBBIES = (
    "rock climbing, sourdough baking, trail running, chess, watercolour painting, birdwatching, playing the "
    "cello, salsa dancing, sea kayaking, woodworking, gardening, knitting, surfing, bouldering, pottery, "
    "cycling, board games, fly fishing, photography, yoga"
).split(", ")
FOODS = "peanuts shellfish gluten lactose eggs sesame soy strawberries kiwi mustard".split()
CUISINES = "Thai Ethiopian Japanese Peruvian Lebanese Georgian Korean Mexican Sicilian Indian".split()
PETS = "dog cat rabbit parrot tortoise hamster".split()
MONTHS = "January February March April May June July August September October November December".split()
RELATIVES = "sister brother mother father daughter son partner cousin".split()
SPORTS_TEAMS = ["Arsenal", "the Celtics", "Benfica", "the Yankees", "Ajax", "the Packers", "Porto", "Bayern"]

TEMPLATES = [
    "Lives in {city}",
    "Moved to {city} in {month} {year}",
    "Grew up in {city}",
    "Works as a {job}",
    "Works at {company}",
    "Used to work at {company} as a {job}",
    "Has a {pet} named {name}",
    "Their {relative} {name} lives in {city}",
    "Their {relative} {name} works as a {job}",
    "Enjoys {hobby} on weekends",
    "Started {hobby} in {year}",
    "Is allergic to {food}",
    "Loves {cuisine} food",
    "Dislikes {cuisine} food",
    "Is training for a half marathon in {city} in {month}",
    "Plans to visit {city} in {month} {year}",
    "Visited {city} with {name} in {year}",
    "Supports {team}",
    "Birthday is on {day} {month}",
    "Is learning {language}",
    "Speaks {language} fluently",
    "Prefers tea to coffee in the morning",
    "Takes the train to work on {weekday}s",
    "Has {count} children",
    "Drives an electric car since {year}",
    "Reads a novel every {weekday} evening",
    "Volunteers at an animal shelter in {city}",
    "Met their partner {name} in {city}",
    "Graduated in {year} as a {job}",
    "Keeps a {pet} and a vegetable garden",
]
LANGUAGES = "Japanese Portuguese German Spanish Korean Italian Dutch Swahili".split()
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()

QUESTIONS = [
    "Where do I live these days?",
    "What do I do for work?",
    "Which company am I with now?",
    "Do I have any pets?",
    "What is my {relative} called?",
    "Where does my {relative} live?",
    "Any food allergies I mentioned?",
    "Suggest a restaurant for dinner in {city} tonight",
    "What should I do this weekend in {city}?",
    "When is my birthday?",
    "Which languages am I learning?",
    "Plan a trip to {city} for me in {month}",
    "What hobbies have I picked up?",
    "Which team do I support?",
    "What did I do in {city} in {year}?",
    "Recommend a gift for my {relative} {name}",
    "How do I usually get to work on {weekday}?",
    "Remind me what I said about {hobby}",
    "Is {cuisine} food a good idea for me?",
    "Help me write a short bio about my job",
]


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        city=rng.choice(CITIES), month=rng.choice(MONTHS), year=rng.randint(1995, 2026), job=rng.choice(JOBS),
        company=rng.choice(COMPANIES), pet=rng.choice(PETS), name=rng.choice(NAMES),
        relative=rng.choice(RELATIVES), hobby=rng.choice(HOBBIES), food=rng.choice(FOODS),
        cuisine=rng.choice(CUISINES), team=rng.choice(SPORTS_TEAMS), day=rng.randint(1, 28),
        language=rng.choice(LANGUAGES), weekday=rng.choice(WEEKDAYS), count=rng.randint(1, 4),
    )  # fmt: skip


def fact_pool(size: int, seed: int = 7) -> list[str]:
    """``size`` distinct fact sentences (fewer if the templates run out)."""
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    tries = 0
    while len(seen) < size and tries < size * 20:
        seen[_fill(rng.choice(TEMPLATES), rng)] = None
        tries += 1
    return list(seen)


def questions(count: int, seed: int = 11) -> list[str]:
    """``count`` questions a user asks, mostly distinct (so that the query-embedding cache rarely helps)."""
    rng = random.Random(seed)
    return [_fill(rng.choice(QUESTIONS), rng) for _ in range(count)]
