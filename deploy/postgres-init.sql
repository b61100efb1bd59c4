-- UNTESTED HERE (used by docker-compose.yml): the service's own database, next to the monolith's.
CREATE DATABASE drivers;
