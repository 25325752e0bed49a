/**
 * Generates the training corpus of capibara-mini: a few hundred KB of simple English,
 * written here from templates (no downloads, no third-party text). Deterministic for a seed.
 *
 * Three kinds of documents, each ended by the end-of-text character (U+0003):
 *  - short encyclopaedia-style paragraphs about capybaras,
 *  - small stories about named capybaras,
 *  - chats in the serving format ("User: …\nAssistant: …\n").
 */
import { mulberry32 } from '../src/sdk/random.ts';

export const EOS_CHAR = '\u0003';

export { mulberry32 };

type Rng = () => number;
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)] as T;
const cap = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

// ───────────── facts (true, simplified) ─────────────

const FACTS: readonly string[][] = [
  [
    'The capybara is the largest living rodent in the world.',
    'Capybaras are the biggest rodents alive today.',
    'No living rodent is larger than the capybara.',
  ],
  [
    'Capybaras live in South America, near rivers, lakes, ponds and marshes.',
    'The capybara is native to South America, where it lives close to water.',
    'Wild capybaras are found across most of South America, always near water.',
  ],
  [
    'Capybaras are excellent swimmers and have slightly webbed feet.',
    'A capybara swims well because its feet are partly webbed.',
    'With their webbed toes, capybaras move easily through water.',
  ],
  [
    'A capybara can stay under water for up to five minutes.',
    'Capybaras can hold their breath for about five minutes to hide from danger.',
    'When it is afraid, a capybara dives and can stay under water for several minutes.',
  ],
  [
    'Capybaras eat grasses and water plants, and sometimes fruit and tree bark.',
    'The capybara is a grazer: it eats mostly grass and plants that grow in water.',
    'Grass is the main food of the capybara, along with water plants and fruit.',
  ],
  [
    'Capybaras live in groups of ten to twenty animals.',
    'A capybara family group usually has between ten and twenty members.',
    'Capybaras are social animals and live together in groups.',
  ],
  [
    'The eyes, ears and nose of a capybara sit high on its head, so it can see and breathe while swimming.',
    'Because its eyes and nostrils are on top of its head, a capybara can watch and breathe while almost all of its body is under water.',
  ],
  [
    'An adult capybara weighs between thirty five and sixty six kilograms.',
    'A grown capybara can weigh as much as an adult person.',
    'Adult capybaras are about one metre long and half a metre tall.',
  ],
  ['The scientific name of the capybara is Hydrochoerus hydrochaeris.', 'Scientists call the capybara Hydrochoerus hydrochaeris, which means water pig.'],
  ['The capybara is a close relative of the guinea pig.', 'Capybaras belong to the same family of rodents as guinea pigs.'],
  [
    'The teeth of a capybara never stop growing, and chewing grass keeps them short.',
    'Like other rodents, capybaras have front teeth that grow all their lives.',
  ],
  ['Birds often sit on the backs of capybaras and eat the insects in their fur.', 'Small birds ride on capybaras and pick insects from their coats.'],
  [
    'Capybaras are calm animals, and many other animals rest beside them.',
    'The capybara is known for being calm and friendly with other animals.',
    'Monkeys, birds, ducks and even cats are often seen sitting next to capybaras.',
  ],
  ['Capybaras talk to each other with purrs, whistles, clicks and barks.', 'A capybara barks when it sees danger and purrs when it is content.'],
  [
    'A female capybara usually has four babies at a time.',
    'Baby capybaras can walk and swim a few hours after they are born.',
    'Young capybaras stay close to the group and are looked after by all the adults.',
  ],
  ['In the wild, capybaras live for about eight to ten years.', 'Capybaras can live for twelve years when they are cared for.'],
  ['Jaguars, caimans, anacondas and harpy eagles hunt capybaras.', 'The main enemies of the capybara are jaguars, caimans and large snakes.'],
  ['Capybaras rest in the heat of the day and eat in the evening.', 'During hot days, capybaras wallow in mud and water to stay cool.'],
  [
    'The name capybara comes from a word in the Tupi language that means one who eats slender leaves.',
    'The word capybara comes from the Tupi language of Brazil.',
  ],
];

const QUESTIONS: ReadonlyArray<[string[], number]> = [
  [['What is a capybara?', 'What kind of animal is a capybara?', 'Tell me about capybaras.'], 0],
  [['Where do capybaras live?', 'Where can I find wild capybaras?', 'Which continent do capybaras come from?'], 1],
  [['Can capybaras swim?', 'Are capybaras good swimmers?', 'How do capybaras swim?'], 2],
  [['How long can a capybara hold its breath?', 'Can a capybara stay under water?'], 3],
  [['What do capybaras eat?', 'What is the favourite food of a capybara?', 'Do capybaras eat grass?'], 4],
  [['Do capybaras live alone?', 'How many capybaras live in a group?', 'Are capybaras social?'], 5],
  [['Why are the eyes of a capybara on top of its head?', 'How does a capybara breathe while swimming?'], 6],
  [['How big is a capybara?', 'How much does a capybara weigh?', 'How heavy is an adult capybara?'], 7],
  [['What is the scientific name of the capybara?', 'What do scientists call the capybara?'], 8],
  [['Is the capybara related to the guinea pig?', 'What animals are related to capybaras?'], 9],
  [['Do the teeth of a capybara keep growing?', 'Why does a capybara chew so much?'], 10],
  [['Why do birds sit on capybaras?', 'Why is there a bird on that capybara?'], 11],
  [['Are capybaras friendly?', 'Why do other animals like capybaras?', 'Are capybaras calm?'], 12],
  [['What sounds do capybaras make?', 'How do capybaras talk to each other?'], 13],
  [['How many babies does a capybara have?', 'Can baby capybaras swim?'], 14],
  [['How long do capybaras live?', 'What is the life span of a capybara?'], 15],
  [['What animals hunt capybaras?', 'Who are the enemies of the capybara?'], 16],
  [['What do capybaras do when it is hot?', 'When do capybaras eat?'], 17],
  [['Where does the name capybara come from?', 'What does the word capybara mean?'], 18],
];

const GREETINGS = ['Hello!', 'Hi!', 'Hello there.', 'Good morning!', 'Hi, who are you?'];
const GREETING_ANSWERS = ['Hello! I am Capibara, a tiny model.', 'Hi! Ask me about capybaras.', 'Hello! How can I help you?'];
const THANKS = ['Thank you!', 'Thanks, that is interesting.', 'Great, thanks.', 'Thank you very much.'];
const THANKS_ANSWERS = ['You are welcome!', 'You are welcome. Stay calm!', 'Happy to help!', 'Any time. Have a calm day.'];

// ───────────── stories ─────────────

const NAMES = ['Pip', 'Luna', 'Tico', 'Mora', 'Bento', 'Nina', 'Olla', 'Rufo', 'Cami', 'Dado', 'Lila', 'Toto', 'Mimi', 'Beto', 'Zaza', 'Kiko'];
const PLACES = [
  'the river',
  'the lake',
  'the marsh',
  'the pond',
  'the muddy bank',
  'the tall grass',
  'the old forest',
  'the warm shallows',
  'the green meadow',
];
const TIMES = ['One morning', 'Early one day', 'In the evening', 'After the rain', 'On a hot afternoon', 'At sunrise', 'Late one night', 'On a quiet day'];
const FRIENDS = [
  'a small yellow bird',
  'a young monkey',
  'an old turtle',
  'a family of ducks',
  'a shy heron',
  'a curious cat',
  'a little frog',
  'a sleepy caiman',
  'a green parrot',
];
const WANTS = [
  'to find the sweetest grass',
  'to swim across the river',
  'to see the sunrise',
  'to find a cool place to rest',
  'to visit the other group',
  'to learn to dive',
  'to find fresh water plants',
];
const FEELINGS = ['happy', 'calm', 'sleepy', 'curious', 'hungry', 'brave', 'tired', 'content'];
const ENDINGS = [
  'When the sun went down, {name} went back to the group and fell asleep in the soft grass.',
  'In the end, {name} and {friend} sat together by {place} and watched the water.',
  'That night, {name} told the whole group about the day, and everyone purred.',
  '{Name} decided that tomorrow would be another good day by {place}.',
  'And so {name} learned that a calm heart is the best friend of all.',
];

function story(rng: Rng): string {
  const name = pick(rng, NAMES);
  const she = rng() < 0.5 ? ['she', 'her'] : ['he', 'his'];
  const place = pick(rng, PLACES);
  const friend = pick(rng, FRIENDS);
  const lines: string[] = [];
  lines.push(`${pick(rng, TIMES)}, a ${pick(rng, FEELINGS)} capybara named ${name} walked down to ${place}.`);
  lines.push(`${cap(she[0]!)} wanted ${pick(rng, WANTS)}.`);
  const middle = [
    `On the way, ${name} met ${friend}.`,
    `"Where are you going?" asked ${friend.replace(/^(a|an) /, 'the ')}.`,
    `"I want ${pick(rng, WANTS)}," said ${name}.`,
    `The water was cool and clear, and ${name} swam slowly with only ${she[1]} eyes and nose above the surface.`,
    `${cap(friend)} sat on ${name}'s back, and together they crossed ${place}.`,
    `Suddenly ${name} heard a noise in the grass. ${cap(she[0]!)} barked to warn the others and dived under the water.`,
    `After a while, the danger was gone, and ${name} came out of the water.`,
    `${name} ate grass for a long time and felt ${pick(rng, FEELINGS)}.`,
    `The sun was hot, so ${name} rested in the mud near ${place}.`,
    `The other capybaras were eating grass, and the babies played near the water.`,
  ];
  const n = 2 + Math.floor(rng() * 4);
  for (let i = 0; i < n; i++) lines.push(pick(rng, middle));
  const ending = pick(rng, ENDINGS);
  lines.push(
    ending
      .replaceAll('{name}', name)
      .replaceAll('{Name}', name)
      .replaceAll('{friend}', friend.replace(/^(a|an) /, 'the '))
      .replaceAll('{place}', place),
  );
  return lines.join(' ');
}

function paragraph(rng: Rng): string {
  const n = 3 + Math.floor(rng() * 4);
  const start = Math.floor(rng() * FACTS.length);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const group = rng() < 0.6 ? FACTS[(start + i) % FACTS.length]! : pick(rng, FACTS);
    out.push(pick(rng, group));
  }
  return [...new Set(out)].join(' ');
}

/** Short chat answers (one line, ≤ ~45 characters) so a 48-character window still sees "Assistant:" and learns where a turn ends. */
const SHORT_ANSWERS: readonly string[][] = [
  ['It is the largest rodent in the world.', 'A very big rodent from South America.', 'The biggest rodent alive today.'],
  ['They live in South America, near water.', 'Near rivers and lakes in South America.', 'In South America, close to rivers.'],
  ['Yes, they are excellent swimmers.', 'Yes! Their feet are partly webbed.', 'Very well. They love the water.'],
  ['For up to five minutes.', 'About five minutes under water.', 'Yes, for about five minutes.'],
  ['Mostly grass and water plants.', 'They eat grass, water plants and fruit.', 'Grass, mostly. Also some fruit.'],
  ['No, they live in groups.', 'Groups of ten to twenty.', 'Yes, they are very social.'],
  ['So they can see while they swim.', 'Their nose stays above the water.', 'It helps them hide in the water.'],
  ['Between 35 and 66 kilograms.', 'About as heavy as an adult person.', 'About one metre long.'],
  ['Hydrochoerus hydrochaeris.', 'It is Hydrochoerus hydrochaeris.'],
  ['Yes, it is a close relative.', 'Guinea pigs are their cousins.'],
  ['Yes, their teeth never stop growing.', 'Chewing keeps their teeth short.'],
  ['They eat the insects in the fur.', 'To pick insects from the fur.'],
  ['Yes, they are very calm.', 'Yes. Other animals like to rest with them.', 'Very calm and friendly.'],
  ['Purrs, whistles, clicks and barks.', 'They purr, whistle, click and bark.'],
  ['Usually four babies.', 'Yes, a few hours after birth.', 'About four pups at a time.'],
  ['About eight to ten years.', 'Up to twelve years with care.'],
  ['Jaguars, caimans and anacondas.', 'Jaguars, caimans and big eagles.'],
  ['They rest in mud and water.', 'They eat in the evening.', 'They stay cool in the water.'],
  ['From the Tupi language of Brazil.', 'It means one who eats slender leaves.'],
];

function answer(rng: Rng, fact: number): string {
  const first = pick(rng, SHORT_ANSWERS[fact]!);
  if (rng() < 0.85) return first;
  return `${first} ${pick(rng, ['Anything else?', 'Ask me more!', 'They are great.'])}`;
}

function chat(rng: Rng): string {
  const lines: string[] = [];
  if (rng() < 0.2) lines.push('System: You are Capibara, a helpful and calm assistant.');
  if (rng() < 0.35) {
    lines.push(`User: ${pick(rng, GREETINGS)}`);
    lines.push(`Assistant: ${pick(rng, GREETING_ANSWERS)}`);
  }
  const turns = 1 + Math.floor(rng() * 3);
  for (let i = 0; i < turns; i++) {
    const [qs, fact] = pick(rng, QUESTIONS);
    lines.push(`User: ${pick(rng, qs)}`);
    lines.push(`Assistant: ${answer(rng, fact)}`);
  }
  if (rng() < 0.3) {
    lines.push(`User: ${pick(rng, THANKS)}`);
    lines.push(`Assistant: ${pick(rng, THANKS_ANSWERS)}`);
  }
  return lines.join('\n') + '\n';
}

/** Builds the corpus: documents separated by EOS_CHAR, about `targetChars` long. */
export function buildCorpus(seed = 7, targetChars = 300_000): string {
  const rng = mulberry32(seed);
  const docs: string[] = [];
  let size = 0;
  while (size < targetChars) {
    const r = rng();
    const doc = r < 0.35 ? paragraph(rng) : r < 0.65 ? story(rng) : chat(rng);
    docs.push(doc + EOS_CHAR);
    size += doc.length + 1;
  }
  return docs.join('');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const text = buildCorpus();
  process.stdout.write(text.slice(0, 3000).replaceAll(EOS_CHAR, '\n<EOS>\n'));
  process.stdout.write(`\n\n${text.length} chars, ${new Set(text).size} distinct\n`);
}
