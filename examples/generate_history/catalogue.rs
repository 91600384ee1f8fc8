//! What the example shop sells, and where and who its customers are.

pub const CATEGORIES: [&str; 4] = ["books", "tea", "fragrance", "home"];
/// (sku, name, category index, EUR cents, USD cents)
pub const PRODUCTS: &[(&str, &str, usize, i64, i64)] = &[
    ("BK-0001", "The Overstory (paperback)", 0, 1800, 1999),
    ("BK-0002", "Piranesi (hardcover)", 0, 1299, 1499),
    ("BK-0003", "The Remains of the Day", 0, 1150, 1299),
    ("BK-0004", "A Gentleman in Moscow", 0, 1690, 1800),
    ("BK-0005", "Braiding Sweetgrass", 0, 1980, 2000),
    ("BK-0006", "The Book of Tea (gift edition)", 0, 2400, 2600),
    ("TE-0101", "Darjeeling First Flush, 100 g", 1, 1450, 1600),
    ("TE-0102", "Earl Grey Imperial, 100 g", 1, 990, 1100),
    ("TE-0103", "Sencha Uji, 50 g", 1, 1200, 1350),
    ("TE-0104", "Rooibos Vanilla, 100 g", 1, 750, 850),
    ("TE-0105", "Assam Breakfast, 250 g", 1, 1390, 1550),
    ("FR-0201", "Cedar & Fig Eau de Parfum, 50 ml", 2, 6800, 7400),
    ("FR-0202", "Neroli Bloom Eau de Toilette", 2, 5400, 5900),
    ("FR-0203", "Amber Library Eau de Parfum", 2, 4500, 4900),
    ("FR-0204", "Black Tea Room Spray, 100 ml", 2, 2900, 3200),
    ("HM-0301", "Linen Tea Towel, Oat", 3, 1400, 1500),
    ("HM-0302", "Stoneware Mug, Moss", 3, 2200, 2400),
    ("HM-0303", "Beeswax Candle, Tall", 3, 1250, 1400),
    ("HM-0304", "Merino Wool Throw, Charcoal", 3, 8900, 9800),
    ("HM-0305", "Cast Iron Teapot, 0.8 l", 3, 4900, 5400),
];
/// First and last names, separated by spaces.
pub const FIRST: &str = "Lena Jonas Mia Paul Anna Felix Clara Noah Emma Leon Sophie Lukas Marie Ben Hannah \
                     Elias Olivia Ethan Grace Liam Ava Mason Chloe Lucas Julia David Sara Tom Nora Max";
pub const LAST: &str = "Hoffmann Becker Schulz Weber Neumann Wagner Fischer Schneider Meyer Koch Wolf Braun \
                    Huber Lang Richter Carter Miller Brown Johnson Davis Garcia Wilson Moore Taylor \
                    Anderson Visser Janssen Martin";
/// (country, city, postcode, time zone, UTC offset in hours, locale; a simplification: no DST)
pub type Place = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    i64,
    &'static str,
);
pub const EU: &[Place] = &[
    ("DE", "Berlin", "10115", "Europe/Berlin", 1, "de-DE"),
    ("DE", "Hamburg", "20095", "Europe/Berlin", 1, "de-DE"),
    ("DE", "Munich", "80331", "Europe/Berlin", 1, "de-DE"),
    ("DE", "Cologne", "50667", "Europe/Berlin", 1, "de-DE"),
    ("DE", "Leipzig", "04109", "Europe/Berlin", 1, "de-DE"),
    ("AT", "Vienna", "1010", "Europe/Vienna", 1, "de-AT"),
    ("NL", "Amsterdam", "1012", "Europe/Amsterdam", 1, "nl-NL"),
    ("FR", "Paris", "75001", "Europe/Paris", 1, "fr-FR"),
];
pub const US: &[Place] = &[
    ("US", "New York", "10001", "America/New_York", -5, "en-US"),
    ("US", "Brooklyn", "11201", "America/New_York", -5, "en-US"),
    ("US", "Boston", "02108", "America/New_York", -5, "en-US"),
    ("US", "Chicago", "60601", "America/Chicago", -6, "en-US"),
    (
        "US",
        "San Francisco",
        "94103",
        "America/Los_Angeles",
        -8,
        "en-US",
    ),
];
pub const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
