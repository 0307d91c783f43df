-- Support desk requesters for identity resolution (see billing_customers for email_domain).
select
    cast(requester_id as bigint)        as requester_id,
    trim(email)                         as email,
    trim(name)                          as name,
    trim(phone)                         as phone,
    case
        when lower(split_part(trim(email), '@', 2)) in
             ('gmail.com', 'outlook.com', 'hotmail.com', 'yahoo.com', 'icloud.com', 'proton.me')
            then null
        else lower(split_part(trim(email), '@', 2))
    end                                 as email_domain,
    cast(updated_at as timestamp)       as updated_at
from {{ source('tools', 'support_requesters') }}
