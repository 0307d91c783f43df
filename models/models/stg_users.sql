-- Product users. Emails are lower-cased here; names and phones are kept as entered.
select
    cast(user_id as bigint)         as user_id,
    cast(account_id as bigint)      as account_id,
    lower(trim(email))              as email,
    trim(full_name)                 as full_name,
    trim(phone)                     as phone,
    role,
    cast(created_at as timestamp)   as created_at,
    cast(last_seen_at as timestamp) as last_seen_at
from {{ source('app', 'users') }}
