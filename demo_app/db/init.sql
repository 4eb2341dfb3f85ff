-- Runs once, when the database is first initialised on an empty volume.
CREATE TABLE IF NOT EXISTS messages (
    id serial PRIMARY KEY,
    text varchar(200) NOT NULL,
    created timestamptz DEFAULT now()
);
INSERT INTO messages (text) VALUES ('hello from the helix demo database');
