-- Support tickets. A ticket is open until it is solved or closed.
select
    cast(ticket_id as bigint)           as ticket_id,
    cast(account_id as bigint)          as account_id,
    lower(trim(requester_email))        as requester_email,
    trim(requester_name)                as requester_name,
    priority,
    status,
    case when status in ('new', 'open', 'pending') then true else false end as is_open,
    cast(created_at as timestamp)       as created_at,
    cast(resolved_at as timestamp)      as resolved_at,
    cast(csat as integer)               as csat
from {{ source('app', 'support_tickets') }}
