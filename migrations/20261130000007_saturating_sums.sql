-- Sums of `value` are reported as double precision. Since `value` is bounded (|value| <= 1e12)
-- no realistic sum comes near the largest double, but rows stored before the bound existed may
-- hold values near 1.8e308, and two of them overflowed every statistic over their range. Sums
-- are therefore added as numeric (exact) and turned into a double by this function, which
-- saturates at the largest finite double instead of failing the query.
create function activity_float8(n numeric) returns double precision
language sql immutable parallel safe
return case
    when n > 1.7976931348623157e308 then 1.7976931348623157e308::float8
    when n < -1.7976931348623157e308 then -1.7976931348623157e308::float8
    else n::float8
end;
