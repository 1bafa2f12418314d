//! The supercenter's catalog and the name lists the generator draws from.
//!
//! Fixed (not drawn from the seed), so a SKU means the same product in every run.

/// One sellable product.
#[derive(Clone, Debug)]
pub(crate) struct Product {
    pub sku: String,
    pub description: String,
    pub category: &'static str,
    pub unit_price_minor: i64,
    pub requires_id_check: bool,
    pub returnable: bool,
    pub return_window_days: i64,
    /// Sales tax in basis points of the discounted line amount.
    pub tax_bp: i64,
}

struct Category {
    name: &'static str,
    returnable: bool,
    return_window_days: i64,
    tax_bp: i64,
    id_check: bool,
    /// (description, price in cents, needs an ID check even if the category does not)
    items: &'static [(&'static str, i64, bool)],
    /// (suffix, price factor in percent)
    variants: &'static [(&'static str, i64)],
}

const SIZES: &[(&str, i64)] = &[("", 100), (", Family Size", 175), (", 2-Pack", 190)];
const PACKS: &[(&str, i64)] = &[("", 100), (", Value Pack", 240)];
const COLOURS: &[(&str, i64)] = &[(", Black", 100), (", Navy", 100), (", Grey", 100)];
const ONE: &[(&str, i64)] = &[("", 100)];

#[rustfmt::skip]
const CATEGORIES: &[Category] = &[
    Category { name: "grocery", returnable: true, return_window_days: 90, tax_bp: 200, id_check: false,
        items: &[("Great Value Spaghetti 16 oz", 118, false), ("Cheerios Cereal 18 oz", 498, false),
            ("Jif Creamy Peanut Butter 40 oz", 648, false), ("Folgers Classic Roast Coffee 25.9 oz", 1298, false),
            ("Campbell's Tomato Soup 10.75 oz", 142, false), ("Lay's Classic Potato Chips 8 oz", 448, false),
            ("Oreo Cookies 14.3 oz", 448, false), ("Great Value Long Grain Rice 5 lb", 378, false),
            ("Coca-Cola 12 fl oz, 12 Cans", 798, false), ("Nature Valley Granola Bars 12 ct", 448, false)],
        variants: SIZES },
    Category { name: "produce", returnable: false, return_window_days: 0, tax_bp: 0, id_check: false,
        items: &[("Bananas, per lb", 58, false), ("Gala Apples 3 lb Bag", 448, false),
            ("Hass Avocados, each", 98, false), ("Strawberries 1 lb", 298, false),
            ("Baby Carrots 2 lb", 228, false), ("Romaine Hearts 3 ct", 348, false),
            ("Yellow Onions 3 lb", 298, false), ("Russet Potatoes 5 lb", 397, false)],
        variants: ONE },
    Category { name: "dairy", returnable: false, return_window_days: 0, tax_bp: 0, id_check: false,
        items: &[("Great Value Whole Milk 1 gal", 348, false), ("Large White Eggs 12 ct", 312, false),
            ("Tillamook Medium Cheddar 8 oz", 398, false), ("Chobani Greek Yogurt 32 oz", 598, false),
            ("Land O Lakes Butter 16 oz", 548, false), ("Philadelphia Cream Cheese 8 oz", 298, false)],
        variants: SIZES },
    Category { name: "bakery", returnable: false, return_window_days: 0, tax_bp: 0, id_check: false,
        items: &[("Sandwich Bread 20 oz", 248, false), ("Blueberry Muffins 6 ct", 448, false),
            ("Flour Tortillas 10 ct", 278, false), ("Chocolate Chip Cookies 12 ct", 398, false)],
        variants: ONE },
    Category { name: "meat", returnable: false, return_window_days: 0, tax_bp: 0, id_check: false,
        items: &[("Boneless Chicken Breast, per lb", 347, false), ("80/20 Ground Beef 1 lb", 548, false),
            ("Oscar Mayer Bacon 16 oz", 698, false), ("Atlantic Salmon Fillet 1 lb", 997, false),
            ("Pork Loin Chops, per lb", 398, false)],
        variants: ONE },
    Category { name: "frozen", returnable: true, return_window_days: 90, tax_bp: 200, id_check: false,
        items: &[("DiGiorno Pepperoni Pizza", 698, false), ("Birds Eye Steamfresh Broccoli", 198, false),
            ("Ben & Jerry's Half Baked 16 oz", 548, false), ("Eggo Homestyle Waffles 10 ct", 328, false),
            ("Tyson Chicken Nuggets 32 oz", 898, false)],
        variants: PACKS },
    Category { name: "household", returnable: true, return_window_days: 90, tax_bp: 825, id_check: false,
        items: &[("Bounty Paper Towels 6 Rolls", 1997, false), ("Charmin Ultra Soft 12 Rolls", 1597, false),
            ("Tide Pods 42 ct", 1397, false), ("Dawn Dish Soap 28 fl oz", 448, false),
            ("Clorox Disinfecting Wipes 75 ct", 598, false), ("Glad Tall Kitchen Bags 80 ct", 1198, false),
            ("Duracell AA Batteries 16 ct", 1697, false), ("Swiffer WetJet Refills 24 ct", 1494, false)],
        variants: PACKS },
    Category { name: "health_beauty", returnable: true, return_window_days: 90, tax_bp: 825, id_check: false,
        items: &[("Crest 3D White Toothpaste 2-Pack", 697, false), ("Dove Body Wash 22 fl oz", 797, false),
            ("Pantene Shampoo 25.4 fl oz", 697, false), ("Gillette Fusion5 Cartridges 4 ct", 2197, false),
            ("Neutrogena Sunscreen SPF 50", 997, false), ("Cetaphil Moisturizing Cream 16 oz", 1497, false)],
        variants: PACKS },
    Category { name: "pharmacy", returnable: true, return_window_days: 90, tax_bp: 0, id_check: false,
        items: &[("Equate Ibuprofen 200 mg 100 ct", 598, false), ("Tylenol Extra Strength 100 ct", 1197, false),
            ("Claritin 24h 30 ct", 2497, false), ("Sudafed 12 Hour Pseudoephedrine 10 ct", 997, true),
            ("Mucinex DM 20 ct", 1597, true), ("Nicorette Gum 4 mg 100 ct", 4497, true),
            ("Equate Multivitamin 200 ct", 898, false), ("Robitussin Cough DM 8 fl oz", 1097, true)],
        variants: ONE },
    Category { name: "electronics", returnable: true, return_window_days: 30, tax_bp: 825, id_check: false,
        items: &[("onn. 50\" 4K UHD Roku TV", 23800, false), ("Apple AirPods (3rd gen)", 16900, false),
            ("JBL Flip 6 Bluetooth Speaker", 9995, false), ("onn. USB-C Charging Cable 6 ft", 1288, false),
            ("Samsung 128GB microSD Card", 1899, false), ("Logitech Wireless Mouse M185", 1499, false),
            ("Nintendo Switch OLED", 34900, false), ("HP DeskJet 2755e Printer", 8900, false),
            ("Amazon Fire TV Stick 4K", 4999, false), ("Anker Power Bank 10000 mAh", 2599, false)],
        variants: ONE },
    Category { name: "apparel", returnable: true, return_window_days: 90, tax_bp: 825, id_check: false,
        items: &[("George Men's Crew Tee", 598, false), ("Time and Tru Women's Jeans", 1798, false),
            ("Athletic Works Hoodie", 1298, false), ("Hanes Men's Crew Socks 6-Pack", 1097, false),
            ("Wonder Nation Kids' Polo", 698, false), ("No Boundaries Leggings", 898, false)],
        variants: COLOURS },
    Category { name: "toys", returnable: true, return_window_days: 90, tax_bp: 825, id_check: false,
        items: &[("LEGO Classic Bricks Box", 3497, false), ("Barbie Dreamhouse Doll", 1999, false),
            ("Hot Wheels 20-Car Pack", 2197, false), ("Play-Doh 10-Pack", 798, false),
            ("Monopoly Classic", 1997, false), ("Nerf Elite 2.0 Blaster", 2497, false)],
        variants: ONE },
    Category { name: "home", returnable: true, return_window_days: 90, tax_bp: 825, id_check: false,
        items: &[("Mainstays 4-Piece Towel Set", 1297, false), ("Better Homes Queen Sheet Set", 2997, false),
            ("Hamilton Beach 12-Cup Coffee Maker", 2488, false), ("Pyrex 10-Piece Storage Set", 1994, false),
            ("Mainstays Desk Lamp", 898, false), ("Ninja Air Fryer 4 qt", 8999, false)],
        variants: ONE },
    Category { name: "sporting_goods", returnable: true, return_window_days: 90, tax_bp: 825, id_check: false,
        items: &[("Ozark Trail 20 oz Tumbler", 697, false), ("Coleman 4-Person Tent", 7900, false),
            ("Spalding Basketball", 1997, false), ("CAP Barbell Dumbbell 20 lb", 2488, false)],
        variants: ONE },
    Category { name: "pets", returnable: true, return_window_days: 90, tax_bp: 825, id_check: false,
        items: &[("Purina Dog Chow 18.5 lb", 1798, false), ("Fresh Step Cat Litter 25 lb", 1697, false),
            ("Friskies Wet Cat Food 24 ct", 1544, false), ("Milk-Bone Dog Treats 24 oz", 598, false)],
        variants: PACKS },
    Category { name: "alcohol", returnable: true, return_window_days: 30, tax_bp: 1000, id_check: true,
        items: &[("Bud Light 12 fl oz, 12 Cans", 1197, false), ("Barefoot Cabernet Sauvignon 750 ml", 698, false),
            ("White Claw Variety 12 ct", 1798, false), ("Tito's Handmade Vodka 750 ml", 2197, false),
            ("Corona Extra 12 ct", 1697, false)],
        variants: ONE },
    Category { name: "tobacco", returnable: false, return_window_days: 0, tax_bp: 1500, id_check: true,
        items: &[("Marlboro Red Kings, Pack", 998, false), ("Camel Blue, Pack", 948, false),
            ("Swisher Sweets Cigarillos 2 ct", 229, false)],
        variants: &[("", 100), (", Carton", 950)] },
    Category { name: "gift_cards", returnable: false, return_window_days: 0, tax_bp: 0, id_check: false,
        items: &[("Store Gift Card $25", 2500, false), ("Store Gift Card $50", 5000, false),
            ("Store Gift Card $100", 10000, false), ("iTunes Gift Card $25", 2500, false)],
        variants: ONE },
];

/// The whole catalog: a few hundred SKUs across the store's departments.
pub(crate) fn catalog() -> Vec<Product> {
    let mut out = Vec::new();
    for (ci, cat) in CATEGORIES.iter().enumerate() {
        for (ii, (desc, price, item_id)) in cat.items.iter().enumerate() {
            for (vi, (suffix, factor)) in cat.variants.iter().enumerate() {
                // Item numbers: 9 digits, stable per (category, item, variant).
                let sku = 100_000_000 + ci * 1_000_000 + ii * 10_000 + vi * 137 + 4021;
                let unit = price * factor / 100;
                // Round to a shelf price ending in 8 or 7 cents, as stores do.
                let unit = if *factor == 100 {
                    unit
                } else {
                    unit - unit % 10 + 8
                };
                out.push(Product {
                    sku: sku.to_string(),
                    description: format!("{desc}{suffix}"),
                    category: cat.name,
                    unit_price_minor: unit.max(1),
                    requires_id_check: cat.id_check || *item_id,
                    returnable: cat.returnable,
                    return_window_days: cat.return_window_days,
                    tax_bp: cat.tax_bp,
                });
            }
        }
    }
    out
}

pub(crate) const FIRST_NAMES: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Carlos",
    "Maria",
    "Daniel",
    "Karen",
    "Wei",
    "Nancy",
    "Anthony",
    "Lisa",
    "Kevin",
    "Priya",
    "Jamal",
    "Aisha",
    "Luis",
    "Sofia",
    "Brian",
    "Emily",
    "Nguyen",
    "Olivia",
    "Tyrone",
    "Hannah",
];

pub(crate) const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Patel",
    "Nguyen",
    "Kim",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Okafor",
    "Chen",
];

/// Pickup codes avoid look-alikes (0/O, 1/I/L, 2/Z, 5/S, 8/B).
pub(crate) const PICKUP_CODE_ALPHABET: &[u8] = b"ACDEFGHJKMNPQRTUVWXY34679";

pub(crate) const CARD_BRANDS: &[(&str, u32)] = &[
    ("visa", 50),
    ("mastercard", 30),
    ("amex", 12),
    ("discover", 8),
];
