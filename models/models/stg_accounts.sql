-- Accounts from the product database, typed and trimmed.
select
    cast(account_id as bigint)      as account_id,
    trim(name)                      as name,
    lower(trim(domain))             as domain,
    industry,
    region,
    upper(country)                  as country,
    cast(employee_count as integer) as employee_count,
    cast(created_at as timestamp)   as created_at,
    plan
from {{ source('app', 'accounts') }}
